//! Outbound admission: Service translation and egress NetworkPolicy on the
//! chosen endpoint. A denial closes the connection at once, logged and
//! counted.
use crate::addrs::{ClientAddr, OrigDstAddr};
use crate::ctx::Ctx;
use crate::metrics::{Direction, Layer};

use super::service::{self, Picked, Target};

/// The endpoint this connection goes to, or `None` when egress denies it.
pub fn admit(ctx: &Ctx, client: ClientAddr, orig: OrigDstAddr, target: &Target) -> Option<Picked> {
    let snap = ctx.state.load();
    match service::pick(&snap, &ctx.affinities, target) {
        Ok(p) => Some(p),
        Err(denied) => {
            crate::logs::denied_connection(
                Direction::Outbound,
                Layer::Egress,
                client.0,
                orig.0,
                None,
                &denied,
            );
            ctx.metrics.denial(Direction::Outbound, Layer::Egress);
            None
        }
    }
}
