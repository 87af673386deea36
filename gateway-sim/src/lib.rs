//! paymesh-gateway-sim
