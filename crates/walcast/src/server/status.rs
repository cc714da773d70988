//! The `/status` page: the replication slot, events per second, stage latencies and clients as
//! small live charts. The page scrapes `/metrics` itself, so it shows exactly what Prometheus
//! would read; its script is inlined and draws inline SVG, so it works offline.

const PAGE: &str = include_str!("../../assets/status/status.html");
const SCRIPT: &str = include_str!("../../assets/status/status.js");

/// The page for `slot`, scraping `metrics_path`.
pub fn page(slot: &str, metrics_path: &str) -> String {
    PAGE.replace("{{slot}}", &html_text(slot))
        .replace("{{metrics}}", &html_text(metrics_path))
        .replace("/*SCRIPT*/", SCRIPT)
}

/// Text safe in an element or a quoted attribute.
fn html_text(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_name_is_escaped_and_script_inlined() {
        let html = page("a<b>&\"c", "/metrics");
        assert!(html.contains("a&lt;b&gt;&amp;&quot;c"), "{html}");
        assert!(html.contains("function parse(text)"));
        assert!(!html.contains("/*SCRIPT*/") && !html.contains("{{"));
    }
}
