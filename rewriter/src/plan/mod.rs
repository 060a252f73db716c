//! Planning a rewrite: how each pad is cut ([`SlotLayout`]) and where every byte goes.

mod address_map;
mod placement;
mod slots;

pub use address_map::{AddressMap, Edit, SectionMove};
pub use placement::{
    plan, plan_insert, InsertSite, KeptAlignment, Layout, Plan, PlanOptions, PlannedSlot,
    ISLAND_BYTES, ISLAND_REACH,
};
pub use slots::{project_savings, Projection, SlotLayout};
