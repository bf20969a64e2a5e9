//! Small blobs (manifest, config) into containerd's content store, with
//! the labels that tell its garbage collector what they reference.

use std::collections::HashMap;

use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::{Info, UpdateRequest, WriteAction, WriteContentRequest};
use containerd_client::tonic::Code;
use prost_types::FieldMask;

use crate::connection::Containerd;
use crate::error::ContainerdError;

/// Bytes per write message (containerd accepts up to 16 MiB).
const WRITE_CHUNK: usize = 1 << 20;

/// Stores `data` under `digest` with `labels`. When containerd already
/// has the blob, only the labels are set.
pub async fn write_blob(
    containerd: &Containerd,
    digest: &str,
    data: &[u8],
    labels: HashMap<String, String>,
) -> Result<(), ContainerdError> {
    let what = || format!("writing {digest} to the content store");
    let total = i64::try_from(data.len()).expect("small blob");
    let reference = format!("lazyctl-{digest}");
    let mut messages = Vec::new();
    let mut offset = 0;
    for piece in data.chunks(WRITE_CHUNK) {
        messages.push(WriteContentRequest {
            action: WriteAction::Write.into(),
            r#ref: reference.clone(),
            total,
            expected: digest.to_owned(),
            offset,
            data: piece.to_vec(),
            labels: HashMap::new(),
        });
        offset += i64::try_from(piece.len()).expect("small piece");
    }
    messages.push(WriteContentRequest {
        action: WriteAction::Commit.into(),
        r#ref: reference,
        total,
        expected: digest.to_owned(),
        offset,
        data: Vec::new(),
        labels: labels.clone(),
    });
    let mut client = ContentClient::new(containerd.channel());
    let outcome = match client
        .write(containerd.request(tokio_stream::iter(messages)))
        .await
    {
        Ok(response) => drain(response.into_inner()).await,
        Err(status) => Err(status),
    };
    match outcome {
        Ok(()) => Ok(()),
        Err(status) if status.code() == Code::AlreadyExists => {
            set_labels(containerd, digest, labels).await
        }
        Err(status) => Err(ContainerdError::rpc(what(), status)),
    }
}

/// Reads the write stream's answers to its end: an error may come after
/// the first answers.
async fn drain(
    mut answers: containerd_client::tonic::Streaming<
        containerd_client::services::v1::WriteContentResponse,
    >,
) -> Result<(), containerd_client::tonic::Status> {
    while answers.message().await?.is_some() {}
    Ok(())
}

/// Sets `labels` on a blob containerd has.
async fn set_labels(
    containerd: &Containerd,
    digest: &str,
    labels: HashMap<String, String>,
) -> Result<(), ContainerdError> {
    let paths = labels.keys().map(|k| format!("labels.{k}")).collect();
    let message = UpdateRequest {
        info: Some(Info {
            digest: digest.to_owned(),
            labels,
            ..Info::default()
        }),
        update_mask: Some(FieldMask { paths }),
    };
    ContentClient::new(containerd.channel())
        .update(containerd.request(message))
        .await
        .map_err(|s| ContainerdError::rpc(format!("labelling {digest}"), s))?;
    Ok(())
}
