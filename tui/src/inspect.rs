//! The inspect readout: everything about the candle under the cursor, in a few short lines
//! (window, source, final or forming, partial when its trades are known incomplete; O/H/L/C and change; volumes; VWAP and trades), prices at
//! the pair's precision. Pure: lines in, no drawing.

use crate::chart::{DOWN, UP, is_up, price};
use candles_core::{Candle, Decimal};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};

/// A decimal without trailing zeros (volumes).
fn amount(d: Decimal) -> String {
    d.normalize().to_string()
}

/// The readout of `c`, prices at `decimals` places.
pub fn readout(c: &Candle, decimals: u32) -> Vec<Line<'static>> {
    let label = |t: &str| Span::raw(t.to_string()).dark_gray();
    let change = c.close - c.open;
    let pct = if c.open.is_zero() {
        Decimal::ZERO
    } else {
        (change / c.open * Decimal::ONE_HUNDRED).round_dp(2)
    };
    let (arrow, sign, colour) = if is_up(c) {
        ("▲", "+", UP)
    } else {
        ("▼", "", DOWN)
    };
    let state = match (c.is_final, c.partial) {
        (true, false) => "final",
        (true, true) => "final · partial",
        (false, false) => "forming",
        (false, true) => "forming · partial",
    };
    let mut ohlc = Vec::new();
    for (name, value) in [
        ("O ", c.open),
        ("  H ", c.high),
        ("  L ", c.low),
        ("  C ", c.close),
    ] {
        ohlc.push(label(name));
        ohlc.push(Span::raw(price(value, decimals)));
    }
    ohlc.push(Span::styled(
        format!(
            "  {arrow} {sign}{} ({sign}{pct:.2}%)",
            price(change, decimals)
        ),
        Style::default().fg(colour),
    ));
    let vwap = c.vwap().map_or("-".into(), |v| price(v, decimals));
    vec![
        Line::from(vec![
            Span::styled("◆ ", Style::default().fg(Color::Cyan)),
            Span::styled(
                format!(
                    "{} – {}",
                    c.start.to_rfc3339_short(),
                    c.end().to_rfc3339_short()
                ),
                Style::default().add_modifier(Modifier::BOLD),
            ),
            Span::raw(format!("  {}  {state}", c.source)),
        ]),
        Line::from(ohlc),
        Line::from(vec![
            label("V "),
            Span::raw(format!("{} {}", amount(c.volume), c.pair.base)),
            label("  buy "),
            Span::raw(amount(c.buy_volume)),
            label("  sell "),
            Span::raw(amount(c.sell_volume)),
            label("  quote "),
            Span::raw(format!("{} {}", amount(c.quote_volume), c.pair.quote)),
        ]),
        Line::from(vec![
            label("VWAP "),
            Span::raw(vwap),
            label("  trades "),
            Span::raw(c.trades.to_string()),
            Span::raw("   ←/→ h/l move · Esc leave").fg(Color::Cyan),
        ]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use candles_core::{Interval, Micros, Pair, Source};

    #[test]
    fn the_readout_names_every_field() {
        let d = |s: &str| Decimal::from_str_exact(s).unwrap();
        let c = Candle {
            pair: Pair::parse("ethusdt").unwrap(),
            source: Source::Composite,
            interval: Interval::seconds(5),
            start: Micros(1_795_675_200_000_000),
            open: d("2921.5"),
            high: d("2925"),
            low: d("2920.25"),
            close: d("2921.04"),
            volume: d("2.5"),
            quote_volume: d("7303"),
            buy_volume: d("1.5"),
            sell_volume: d("1"),
            trades: 7,
            is_final: true,
            partial: false,
        };
        let text: Vec<String> = readout(&c, 2)
            .iter()
            .map(|l| l.spans.iter().map(|s| s.content.as_ref()).collect())
            .collect();
        assert_eq!(
            text[0],
            "◆ 2026-11-26T06:40:00Z – 2026-11-26T06:40:05Z  composite  final"
        );
        assert_eq!(
            text[1],
            "O 2921.50  H 2925.00  L 2920.25  C 2921.04  ▼ -0.46 (-0.02%)"
        );
        assert_eq!(text[2], "V 2.5 ETH  buy 1.5  sell 1  quote 7303 USDT");
        assert!(text[3].starts_with("VWAP 2921.20  trades 7"), "{}", text[3]);
    }
}
