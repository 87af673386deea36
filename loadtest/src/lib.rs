//! paymesh-loadtest
