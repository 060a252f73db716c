//! Compiler builtins that `core` may reference but libgcc lacks (LLVM's `__muloti4`, used by
//! `core::num::from_str_radix`): the staticlib exports them so programs link with plain gcc.

/// Signed 128-bit multiply reporting overflow, built from 64-bit halves only (so it cannot
/// recurse into itself).
pub fn mul_i128_overflow(a: i128, b: i128) -> (i128, bool) {
    let neg = (a < 0) != (b < 0);
    let ua = a.unsigned_abs();
    let ub = b.unsigned_abs();
    let (a1, a0) = ((ua >> 64) as u64, ua as u64);
    let (b1, b0) = ((ub >> 64) as u64, ub as u64);
    let mut over = a1 != 0 && b1 != 0;
    let low = a0 as u128 * b0 as u128;
    let cross = a1 as u128 * b0 as u128 + a0 as u128 * b1 as u128; // one term is 0 unless `over`
    if cross >> 64 != 0 {
        over = true;
    }
    let (mag, carry) = low.overflowing_add(cross << 64);
    over |= carry;
    let limit = if neg {
        1u128 << 127
    } else {
        (1u128 << 127) - 1
    };
    if mag > limit {
        over = true;
    }
    let v = if neg {
        (mag as i128).wrapping_neg()
    } else {
        mag as i128
    };
    (v, over)
}

/// `__muloti4(a, b, &overflow)` as compiler-rt defines it.
#[cfg(padtrim_staticlib)]
#[allow(improper_ctypes_definitions)] // i128 is what compiler-rt uses; LLVM passes it in two registers
#[no_mangle]
pub extern "C" fn __muloti4(a: i128, b: i128, overflow: &mut i32) -> i128 {
    let (v, o) = mul_i128_overflow(a, b);
    *overflow = o as i32;
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_core_overflowing_mul() {
        let vals: [i128; 12] = [
            0,
            1,
            -1,
            2,
            -2,
            i128::MAX,
            i128::MIN,
            1 << 64,
            -(1 << 64),
            (1 << 63) + 12345,
            i128::MAX / 3,
            -(i128::MAX / 7),
        ];
        for &a in &vals {
            for &b in &vals {
                assert_eq!(
                    mul_i128_overflow(a, b),
                    a.overflowing_mul(b),
                    "{} * {}",
                    a,
                    b
                );
            }
        }
    }
}
