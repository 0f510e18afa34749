//! Starts one exchange connector per exchange for `--embedded` (glue to candles-connector).

use crate::app::Event;
use crate::embedded::EmbeddedConfig;
use candles_core::Trade;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Spawns the connectors; trades go to `trades`, their states to `events`.
pub fn spawn(
    _cfg: &EmbeddedConfig,
    _trades: mpsc::Sender<Trade>,
    _events: mpsc::Sender<Event>,
    _tracker: &TaskTracker,
    _shutdown: CancellationToken,
) -> anyhow::Result<()> {
    anyhow::bail!("--embedded needs candles-connector, which is not built yet")
}
