//! A request's body as the transport hands it to a surface: read whole, bounded, by the surface
//! that wants it ([`RequestBody::read`]).
//!
//! What a surface leaves unread (a 404, a 401 before the body matters) the transport reads, as
//! far as the limit, before the answer goes out ([`RequestBody::drain`]): over HTTP/2 an answer
//! that ends while its request's body is still arriving is followed by a reset of the stream,
//! and clients then report the reset (curl: exit 92) instead of the answer.

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body, Incoming};

/// Why a body could not be read. Each surface answers it in its own shape, with [`status`].
///
/// [`status`]: BodyError::status
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("request body exceeds {limit} bytes")]
    TooLarge { limit: usize },
    #[error("request body could not be read")]
    Unreadable,
    #[error("request body was not received within {secs} s")]
    TimedOut { secs: u64 },
}

impl BodyError {
    pub fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Unreadable => StatusCode::BAD_REQUEST,
            BodyError::TimedOut { .. } => StatusCode::REQUEST_TIMEOUT,
        }
    }
}

/// The body of one request, not yet read.
pub struct RequestBody {
    incoming: Option<Incoming>,
    /// How long the whole body may take to arrive (a client trickling its body would otherwise
    /// hold a connection and a task).
    deadline: Duration,
}

impl RequestBody {
    pub fn new(incoming: Incoming, deadline: Duration) -> RequestBody {
        RequestBody {
            incoming: Some(incoming),
            deadline,
        }
    }

    /// The whole body, at most `limit` bytes, within the deadline. A second read finds it empty.
    pub async fn read(&mut self, limit: usize) -> Result<Bytes, BodyError> {
        let Some(incoming) = self.incoming.take() else {
            return Ok(Bytes::new());
        };
        match tokio::time::timeout(self.deadline, Limited::new(incoming, limit).collect()).await {
            Ok(Ok(collected)) => Ok(collected.to_bytes()),
            Ok(Err(e))
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                Err(BodyError::TooLarge { limit })
            }
            Ok(Err(_)) => Err(BodyError::Unreadable),
            Err(_) => Err(BodyError::TimedOut {
                secs: self.deadline.as_secs(),
            }),
        }
    }

    /// Read and drop what no surface read, up to `limit` bytes and within the deadline; past
    /// either the rest is left unread (the stream is then reset after the answer, as it must be).
    pub async fn drain(&mut self, limit: usize) {
        let Some(mut incoming) = self.incoming.take() else {
            return;
        };
        if incoming.is_end_stream() {
            return;
        }
        let discard = async {
            let mut seen = 0usize;
            while let Some(Ok(frame)) = incoming.frame().await {
                if let Some(data) = frame.data_ref() {
                    seen = seen.saturating_add(data.len());
                    if seen > limit {
                        return;
                    }
                }
            }
        };
        let _ = tokio::time::timeout(self.deadline, discard).await;
    }
}
