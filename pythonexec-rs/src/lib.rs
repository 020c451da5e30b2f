//! Run Python from a Rust AWS Lambda function.

#[cfg(feature = "testing")]
pub mod testing;
