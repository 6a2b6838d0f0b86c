//! HTTP/2 flow-control windows: how much a peer may send on one stream,
//! and on one connection, before this sidecar has passed it on.
//!
//! The windows are fixed rather than adaptive. hyper's adaptive windows
//! (BDP pings) stop growing on a connection that first carried light
//! traffic: each sample that does not beat the highest bandwidth seen so
//! far quadruples the delay to the next one (to 10 s and beyond), so a
//! pooled mesh connection that served 1000 rps of small requests and then
//! carries a large download stays at its small window. Measured with
//! `MODES="rate bulk"` and `MODES="ka close rate bulk"` in
//! `bench/mesh.sh`, a 1 GiB download after the 1000 rps run: 4.0 to 6.6
//! Gbit/s and 1.3 to 1.8 CPU-s/GB for both hops with adaptive windows,
//! 8.0 to 9.3 Gbit/s and 1.0 to 1.05 CPU-s/GB with these (4 MiB / 8 MiB
//! beat 1 MiB / 4 MiB by about 8%).
//!
//! A window is credit, not an allocation: memory is only used when a
//! consumer falls behind, and then at most the connection window per
//! connection (adaptive windows could reach 16 MiB).

/// Largest window HTTP/2 allows (RFC 9113 §6.9.1).
pub const MAX_WINDOW: u32 = (1 << 31) - 1;
/// The initial window every HTTP/2 endpoint starts with (RFC 9113 §6.9.2).
pub const MIN_WINDOW: u32 = 65_535;

/// The windows this sidecar advertises on its HTTP/2 connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct H2Windows {
    /// Per stream (`SETTINGS_INITIAL_WINDOW_SIZE`).
    pub stream: u32,
    /// Per connection (raised with a `WINDOW_UPDATE` on stream 0).
    pub connection: u32,
}

impl Default for H2Windows {
    fn default() -> Self {
        Self {
            stream: 4 << 20,
            connection: 8 << 20,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WindowError {
    #[error("an HTTP/2 window must be between {MIN_WINDOW} and {MAX_WINDOW} bytes, not {0}")]
    OutOfRange(u64),
    #[error(
        "the HTTP/2 connection window ({connection} bytes) is smaller than the stream window ({stream} bytes), so no stream could use its whole window"
    )]
    ConnectionBelowStream { stream: u32, connection: u32 },
}

impl H2Windows {
    /// Checks both sizes against HTTP/2's limits and each other.
    pub fn new(stream: u64, connection: u64) -> Result<Self, WindowError> {
        let check = |v: u64| {
            u32::try_from(v)
                .ok()
                .filter(|v| (MIN_WINDOW..=MAX_WINDOW).contains(v))
                .ok_or(WindowError::OutOfRange(v))
        };
        let (stream, connection) = (check(stream)?, check(connection)?);
        if connection < stream {
            return Err(WindowError::ConnectionBelowStream { stream, connection });
        }
        Ok(Self { stream, connection })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_checked_against_http2_limits() {
        assert_eq!(H2Windows::new(65_535, 65_535).map(|w| w.stream), Ok(65_535));
        assert_eq!(
            H2Windows::new(65_534, 1 << 20),
            Err(WindowError::OutOfRange(65_534))
        );
        assert_eq!(
            H2Windows::new(1 << 20, 1 << 31),
            Err(WindowError::OutOfRange(1 << 31))
        );
        assert_eq!(
            H2Windows::new(u64::MAX, u64::MAX),
            Err(WindowError::OutOfRange(u64::MAX))
        );
        assert_eq!(
            H2Windows::new(2 << 20, 1 << 20),
            Err(WindowError::ConnectionBelowStream {
                stream: 2 << 20,
                connection: 1 << 20
            })
        );
        let d = H2Windows::default();
        assert_eq!(H2Windows::new(d.stream.into(), d.connection.into()), Ok(d));
    }
}
