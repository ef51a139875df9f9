//! Billing: the price table, and what a submit must pass before its task exists (request
//! rate, in-flight limit, the price held with the task). Holds are captured or released by
//! the store in the transaction that ends the task.

pub mod admission;
pub mod prices;
