// cxx.cc: C++ features with their own machinery: exceptions thrown across several frames,
// caught, rethrown and caught again (unwinding through .eh_frame / .gcc_except_table), RAII
// destructors during unwinding, virtual calls through vtables, templates and inline member
// functions (COMDAT groups). Prints deterministic output; exit status 3.
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

namespace corpus {

struct Trace {
    const char *what;
    explicit Trace(const char *w) : what(w) { std::printf("enter %s\n", what); }
    ~Trace() { std::printf("leave %s\n", what); }
};

class Shape {
public:
    virtual ~Shape() {}
    virtual double area() const = 0;
    virtual const char *name() const { return "shape"; }
};

class Rect : public Shape {
public:
    Rect(double w, double h) : w_(w), h_(h) {}
    double area() const override { return w_ * h_; }
    const char *name() const override { return "rect"; }
private:
    double w_, h_;
};

class Square : public Rect {
public:
    explicit Square(double s) : Rect(s, s) {}
    const char *name() const override { return "square"; }
};

class Triangle : public Shape {
public:
    Triangle(double b, double h) : b_(b), h_(h) {}
    double area() const override { return b_ * h_ / 2; }
private:
    double b_, h_;
};

struct ParseError : std::runtime_error {
    int position;
    ParseError(const std::string &msg, int pos) : std::runtime_error(msg), position(pos) {}
};

template <typename T> T clamp_sum(const std::vector<T> &v, T limit)
{
    T total = T();
    for (const T &x : v)
        total = total + x > limit ? limit : total + x;
    return total;
}

__attribute__((noinline)) int parse_digit(char c, int pos)
{
    if (c < '0' || c > '9')
        throw ParseError(std::string("not a digit: ") + c, pos);
    return c - '0';
}

__attribute__((noinline)) int parse_number(const char *s)
{
    Trace t("parse_number");
    int value = 0;
    for (int i = 0; s[i]; i++)
        value = value * 10 + parse_digit(s[i], i);
    return value;
}

__attribute__((noinline)) int parse_and_double(const char *s)
{
    Trace t("parse_and_double");
    try {
        return 2 * parse_number(s);
    } catch (const ParseError &e) {
        std::printf("parse_and_double: rethrowing '%s' at %d\n", e.what(), e.position);
        throw;
    }
}

__attribute__((noinline)) int checked(const char *s)
{
    try {
        return parse_and_double(s);
    } catch (const std::runtime_error &e) {
        std::printf("checked: caught '%s'\n", e.what());
        return -1;
    }
}

} // namespace corpus

int main()
{
    using namespace corpus;
    std::vector<Shape *> shapes{new Rect(2, 3), new Square(4), new Triangle(5, 2)};
    double total = 0;
    for (const Shape *s : shapes) {
        std::printf("%s area=%.1f\n", s->name(), s->area());
        total += s->area();
    }
    std::printf("total=%.1f\n", total);
    for (Shape *s : shapes)
        delete s;

    std::printf("checked(\"1234\")=%d\n", checked("1234"));
    std::printf("checked(\"12x4\")=%d\n", checked("12x4"));
    try {
        parse_and_double("7?");
    } catch (const ParseError &e) {
        std::printf("main: caught at position %d\n", e.position);
    }
    std::vector<int> ints{5, 10, 20, 40};
    std::vector<double> doubles{0.5, 1.5, 2.5};
    std::printf("clamp_sum=%d %.1f\n", clamp_sum(ints, 30), clamp_sum(doubles, 100.0));
    std::fprintf(stderr, "cxx: done\n");
    return 3;
}
