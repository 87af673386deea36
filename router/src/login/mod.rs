//! LOGIN checks: the failed-login [`throttle`] (sans-IO).

pub mod throttle;
