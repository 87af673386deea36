//! paymesh-router
