//! A generated market-data feed: what an exchange's ticker stream looks like, offline.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

/// Symbols streamed when a subscription names none.
pub const DEFAULT_SYMBOLS: &[&str] = &["BTC-USD"];

/// Per-connection feed state: subscribed symbols and a random walk of prices.
#[derive(Debug)]
pub struct Feed {
    symbols: Vec<(String, f64)>,
    seq: u64,
    rng: u64,
}

/// What a client's text message asks for.
#[derive(Debug, PartialEq)]
pub enum Request {
    Subscribe(Vec<String>),
    Unsubscribe,
    Unknown,
}

/// Understands `{"op"|"type"|"method"|"event": "subscribe", "symbols"|"symbol"|"channel": ...}`
/// and plain `subscribe`.
pub fn parse_request(text: &str) -> Request {
    let value: Value = serde_json::from_str(text).unwrap_or(Value::String(text.trim().into()));
    let action = match &value {
        Value::String(s) => s.to_ascii_lowercase(),
        Value::Object(map) => ["op", "type", "method", "event", "action"]
            .iter()
            .find_map(|k| map.get(*k).and_then(Value::as_str))
            .unwrap_or("")
            .to_ascii_lowercase(),
        _ => String::new(),
    };
    if action.starts_with("unsub") {
        return Request::Unsubscribe;
    }
    if !action.starts_with("sub") {
        return Request::Unknown;
    }
    let mut symbols: Vec<String> = Vec::new();
    if let Value::Object(map) = &value {
        for key in ["symbols", "symbol", "product_ids", "pairs"] {
            match map.get(key) {
                Some(Value::String(s)) => symbols.push(s.clone()),
                Some(Value::Array(items)) => {
                    symbols.extend(items.iter().filter_map(Value::as_str).map(String::from))
                }
                _ => {}
            }
        }
    }
    if symbols.is_empty() {
        symbols = DEFAULT_SYMBOLS.iter().map(|s| s.to_string()).collect();
    }
    symbols.truncate(100);
    Request::Subscribe(symbols)
}

impl Feed {
    pub fn new(seed: u64) -> Self {
        Feed {
            symbols: Vec::new(),
            seq: 0,
            rng: seed | 1,
        }
    }

    /// Subscribes and returns the confirmation message.
    pub fn subscribe(&mut self, symbols: Vec<String>) -> String {
        for s in symbols {
            if self.symbols.len() >= 100 {
                break; // a bound across requests, not only per request
            }
            if !self.symbols.iter().any(|(name, _)| *name == s) {
                let start = 100.0 + (self.next_random() % 60_000) as f64;
                self.symbols.push((s, start));
            }
        }
        let names: Vec<&str> = self.symbols.iter().map(|(n, _)| n.as_str()).collect();
        json!({"type": "subscribed", "symbols": names}).to_string()
    }

    pub fn unsubscribe(&mut self) -> String {
        self.symbols.clear();
        json!({"type": "unsubscribed"}).to_string()
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64: plenty for made-up prices.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// One tick per subscribed symbol.
    pub fn ticks(&mut self) -> Vec<String> {
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut out = Vec::with_capacity(self.symbols.len());
        for i in 0..self.symbols.len() {
            let step = (self.next_random() % 2001) as f64 / 1000.0 - 1.0; // -1.0 ..= 1.0
            let qty = (self.next_random() % 5000) as f64 / 1000.0;
            let (name, price) = &mut self.symbols[i];
            *price = (*price * (1.0 + step / 1000.0)).max(0.01);
            self.seq += 1;
            out.push(
                json!({
                    "type": "tick",
                    "symbol": name,
                    "seq": self.seq,
                    "price": (*price * 100.0).round() / 100.0,
                    "qty": qty,
                    "ts": ts,
                })
                .to_string(),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn understands_common_subscription_shapes() {
        assert_eq!(
            parse_request("subscribe"),
            Request::Subscribe(vec!["BTC-USD".into()])
        );
        assert_eq!(
            parse_request(r#"{"op":"subscribe","symbols":["ETH-USD","SOL-USD"]}"#),
            Request::Subscribe(vec!["ETH-USD".into(), "SOL-USD".into()])
        );
        assert_eq!(
            parse_request(r#"{"method":"SUBSCRIBE","symbol":"X"}"#),
            Request::Subscribe(vec!["X".into()])
        );
        assert_eq!(
            parse_request(r#"{"op":"unsubscribe"}"#),
            Request::Unsubscribe
        );
        assert_eq!(parse_request("hello"), Request::Unknown);
    }

    #[test]
    fn ticks_are_json_with_increasing_seq() {
        let mut feed = Feed::new(7);
        feed.subscribe(vec!["A".into(), "B".into()]);
        let ticks: Vec<Value> = (0..3)
            .flat_map(|_| feed.ticks())
            .map(|t| serde_json::from_str(&t).unwrap())
            .collect();
        assert_eq!(ticks.len(), 6);
        let seqs: Vec<u64> = ticks.iter().map(|t| t["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5, 6]);
        assert!(ticks.iter().all(|t| t["price"].as_f64().unwrap() > 0.0));
    }
}
