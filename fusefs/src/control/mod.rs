//! The control socket server: JSON lines, one request per connection line.
//! Each connection is a task; operations that touch the disk run on
//! blocking threads. Failures leave as typed errors ([`errors`]).

pub(crate) mod errors;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tracing::Instrument;

use lazy_control::{ControlError, ErrorKind, Request, Response};

use crate::state::DaemonState;

/// Binds the socket (root-only, mode 0600), replacing a stale one.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves connections until the runtime stops.
pub async fn serve(listener: UnixListener, state: Arc<DaemonState>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(handle(stream, Arc::clone(&state)));
            }
            Err(e) => tracing::warn!("control socket accept: {e}"),
        }
    }
}

/// Numbers requests, so that one can be followed through the logs.
static NEXT_REQUEST: AtomicU64 = AtomicU64::new(1);

async fn handle(stream: UnixStream, state: Arc<DaemonState>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let response = match serde_json::from_str::<Request>(&line) {
            Ok(request) => {
                let id = NEXT_REQUEST.fetch_add(1, Ordering::Relaxed);
                let span = tracing::info_span!("request", id, op = op_name(&request));
                dispatch(&state, request).instrument(span).await
            }
            Err(e) => Response::Error(ControlError::new(
                ErrorKind::InvalidRequest,
                format!("bad request: {e}"),
            )),
        };
        let mut out = serde_json::to_vec(&response).expect("responses serialize");
        out.push(b'\n');
        if write.write_all(&out).await.is_err() {
            return;
        }
    }
}

/// A request's operation, as named in the protocol.
fn op_name(request: &Request) -> &'static str {
    match request {
        Request::Ping => "ping",
        Request::Attach { .. } => "attach",
        Request::AttachLayer { .. } => "attach_layer",
        Request::RecordStart { .. } => "record_start",
        Request::RecordStop => "record_stop",
        Request::Detach { .. } => "detach",
        Request::List => "list",
        Request::Stats => "stats",
        Request::Gc { .. } => "gc",
        Request::Verify => "verify",
        Request::Images => "images",
        Request::Flat { .. } => "flat",
        Request::Pin { .. } => "pin",
    }
}

async fn dispatch(state: &Arc<DaemonState>, request: Request) -> Response {
    tracing::debug!(?request, "control request");
    let result = match request {
        Request::Ping => Ok(Response::Ok),
        Request::Attach {
            image,
            pin,
            prefetch,
            with_config,
            pull,
            credentials,
        } => state
            .attach(&image, pin, prefetch, pull, credentials.as_ref())
            .await
            .map(|attached| match with_config {
                true => Response::Image(attached),
                false => Response::Layers(attached.layers),
            }),
        Request::AttachLayer {
            image,
            digest,
            credentials,
        } => state
            .attach_layer_blob(&image, &digest, credentials.as_ref())
            .await
            .map(|layer| Response::Layers(vec![layer])),
        Request::RecordStart { image } => state.record_start(&image).await.map(|()| Response::Ok),
        Request::RecordStop => state.record_stop().map(Response::Record),
        Request::Detach { target } => state
            .blocking(move |s| s.detach(&target))
            .await
            .map(|()| Response::Ok),
        Request::List => Ok(Response::Layers(state.list())),
        Request::Stats => {
            state.settled().await;
            Ok(Response::Stats(state.stats()))
        }
        Request::Gc { target_bytes } => {
            state.settled().await;
            let (chunks, removed) = state.blocking(move |s| s.gc(target_bytes)).await;
            Ok(Response::Removed { chunks, removed })
        }
        Request::Verify => {
            state.settled().await;
            let (chunks, removed) = state.blocking(DaemonState::verify).await;
            Ok(Response::Removed { chunks, removed })
        }
        Request::Flat { image } => state
            .blocking(move |s| s.flat_view(&image))
            .await
            .map(Response::Path),
        Request::Images => {
            state.settled().await;
            Ok(Response::Images(
                state.blocking(DaemonState::image_usage).await,
            ))
        }
        Request::Pin {
            image,
            pinned,
            fetch,
        } => state
            .pin_image(&image, pinned, fetch)
            .await
            .map(|usage| Response::Images(vec![usage])),
    };
    result.unwrap_or_else(Response::Error)
}
