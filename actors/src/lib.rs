//! paymesh-actors
