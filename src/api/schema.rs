//! PLACEHOLDER — to be replaced by the OpenAPI 3.1 document.
use hyper::Response;
use crate::error::{Error, Result};
use crate::http::body::Body;
pub fn document() -> Result<Response<Body>> { Err(Error::internal("placeholder")) }
