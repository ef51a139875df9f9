//! Billing: the price table today; holds, captures and releases against the ledger
//! (`Store::hold_charge` and friends) are applied to tasks next.

pub mod prices;
