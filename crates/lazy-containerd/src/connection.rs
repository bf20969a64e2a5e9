//! One connection to containerd: every request carries the namespace and,
//! while an import runs, the lease that keeps its content and snapshots
//! from being garbage-collected half-made.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use containerd_client::services::v1::{CreateRequest, DeleteRequest, leases_client::LeasesClient};
use containerd_client::tonic::metadata::MetadataValue;
use containerd_client::tonic::transport::Channel;
use containerd_client::tonic::{Code, Request};

use crate::error::ContainerdError;

/// containerd's default socket.
pub const DEFAULT_ADDRESS: &str = "/run/containerd/containerd.sock";
/// containerd's default namespace (the one `ctr` uses).
pub const DEFAULT_NAMESPACE: &str = "default";
/// How long a lease outlives an import that died before deleting it.
const LEASE_EXPIRY: Duration = Duration::from_secs(3600);

/// A connected client in one namespace.
#[derive(Debug, Clone)]
pub struct Containerd {
    channel: Channel,
    namespace: String,
    lease: Option<String>,
}

impl Containerd {
    /// Connects to the socket at `address`.
    pub async fn connect(address: &Path, namespace: &str) -> Result<Self, ContainerdError> {
        let channel = containerd_client::connect(address)
            .await
            .map_err(|source| ContainerdError::Connect {
                address: address.to_owned(),
                source,
            })?;
        Ok(Self {
            channel,
            namespace: namespace.to_owned(),
            lease: None,
        })
    }

    /// The channel, for the service clients.
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// `message` as a request in this namespace (and lease).
    pub fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        let metadata = request.metadata_mut();
        if let Ok(ns) = MetadataValue::try_from(self.namespace.as_str()) {
            metadata.insert("containerd-namespace", ns);
        }
        if let Some(lease) = self
            .lease
            .as_deref()
            .and_then(|l| MetadataValue::try_from(l).ok())
        {
            metadata.insert("containerd-lease", lease);
        }
        request
    }

    /// Takes a lease that expires by itself in an hour, and uses it for
    /// every request from now on.
    pub async fn take_lease(&mut self) -> Result<(), ContainerdError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let id = format!("lazyctl-pull-{}-{}", now.as_nanos(), std::process::id());
        let expiry = rfc3339(now + LEASE_EXPIRY);
        let message = CreateRequest {
            id: id.clone(),
            labels: [("containerd.io/gc.expire".to_owned(), expiry)].into(),
        };
        LeasesClient::new(self.channel())
            .create(self.request(message))
            .await
            .map_err(|s| ContainerdError::rpc("creating a lease", s))?;
        self.lease = Some(id);
        Ok(())
    }

    /// Deletes the lease (what it protected must be referenced by now).
    pub async fn release_lease(&mut self) -> Result<(), ContainerdError> {
        let Some(id) = self.lease.take() else {
            return Ok(());
        };
        let message = DeleteRequest { id, sync: false };
        match LeasesClient::new(self.channel())
            .delete(self.request(message))
            .await
        {
            Err(s) if s.code() != Code::NotFound => {
                Err(ContainerdError::rpc("deleting the lease", s))
            }
            _ => Ok(()),
        }
    }
}

/// `since_epoch` as an RFC 3339 UTC time (`2026-12-03T13:12:37Z`), the
/// format containerd's `gc.expire` label takes.
fn rfc3339(since_epoch: Duration) -> String {
    let secs = since_epoch.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The calendar date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for days after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_times() {
        assert_eq!(rfc3339(Duration::ZERO), "1970-01-01T00:00:00Z");
        // `date -u -d @1796303557 +%FT%TZ`
        assert_eq!(
            rfc3339(Duration::from_secs(1_796_303_557)),
            "2026-12-03T13:12:37Z"
        );
        // A leap day.
        assert_eq!(
            rfc3339(Duration::from_secs(1_709_208_000)),
            "2024-02-29T12:00:00Z"
        );
    }
}
