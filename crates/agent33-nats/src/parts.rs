//! Reports larger than one NATS message (1 MiB by default) travel in parts:
//! the product's output limit is not the server's message limit.

/// Bytes per part: half the server's default `max_payload`, leaving room
/// for headers.
pub(crate) const PART: usize = 512 * 1024;

/// Header saying more parts follow this one.
pub(crate) const MORE: &str = "A33-More";
/// Header naming the execution a part belongs to (`seq.attempt.delivered`).
pub(crate) const EXECUTION: &str = "A33-Execution";
/// Header of a result's last part: the task message's acknowledgement
/// subject, which the coordinator acknowledges once it took the result.
pub(crate) const ACK: &str = "A33-Ack";

/// Splits `body` into parts of at most [`PART`] bytes; an empty body is one
/// empty part.
pub(crate) fn split(body: &bytes::Bytes) -> Vec<bytes::Bytes> {
    if body.is_empty() {
        return vec![body.clone()];
    }
    (0..body.len())
        .step_by(PART)
        .map(|at| body.slice(at..(at + PART).min(body.len())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_rejoin_to_the_body() {
        for len in [0, 1, PART - 1, PART, PART + 1, 3 * PART + 17] {
            let body = bytes::Bytes::from((0..len).map(|i| (i % 251) as u8).collect::<Vec<_>>());
            let parts = split(&body);
            assert!(parts.iter().all(|p| p.len() <= PART), "len {len}");
            assert_eq!(parts.len(), len.div_ceil(PART).max(1), "len {len}");
            assert_eq!(parts.concat(), body.to_vec(), "len {len}");
        }
    }
}
