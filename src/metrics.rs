//! PLACEHOLDER — to be replaced by the Prometheus metrics.
use hyper::Response;
use crate::app::App;
use crate::error::{Error, Result};
use crate::http::body::Body;
pub fn render(_app: &App) -> Result<Response<Body>> { Err(Error::internal("placeholder")) }
