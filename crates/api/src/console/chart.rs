//! Bar charts drawn on the server as SVG: they need no script, print, scale
//! with the page and carry their numbers as text for screen readers (each
//! bar's `<title>`, and the table the page shows beside the chart).

/// One bar.
pub(crate) struct Bar {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
    /// What the bar stands for and its value, as people read them.
    pub title: String,
}

/// A bar chart in a 600 × 160 view box.
pub(crate) struct Chart {
    pub caption: String,
    pub bars: Vec<Bar>,
    /// The largest value, labelled at the top of the axis.
    pub top: String,
    /// The first and last labels, under the ends of the axis.
    pub first: String,
    pub last: String,
}

pub(crate) const WIDTH: u32 = 600;
pub(crate) const HEIGHT: u32 = 160;
/// Room left of the bars for the axis label.
const LEFT: u32 = 64;

impl Chart {
    /// `points` are (label, value, the value as text), in order.
    pub fn bars(caption: &str, points: &[(String, f64, String)]) -> Chart {
        let max = points.iter().map(|p| p.1).fold(0.0_f64, f64::max);
        let n = points.len().max(1) as u32;
        let slot = (WIDTH - LEFT) / n;
        let width = slot.saturating_sub(2).max(1);
        let bars = points
            .iter()
            .enumerate()
            .map(|(i, (label, value, text))| {
                let height = if max > 0.0 {
                    ((value / max) * f64::from(HEIGHT - 20)).round() as u32
                } else {
                    0
                };
                Bar {
                    x: LEFT + i as u32 * slot,
                    y: HEIGHT - height,
                    width,
                    height,
                    title: format!("{label}: {text}"),
                }
            })
            .collect();
        let top = points
            .iter()
            .find(|p| p.1 == max)
            .map_or_else(String::new, |p| p.2.clone());
        Chart {
            caption: caption.to_string(),
            bars,
            top,
            first: points.first().map_or_else(String::new, |p| p.0.clone()),
            last: points.last().map_or_else(String::new, |p| p.0.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tallest_bar_fills_the_chart_and_empty_days_have_none() {
        let points = vec![
            ("d1".to_string(), 0.0, "0".to_string()),
            ("d2".to_string(), 10.0, "10".to_string()),
            ("d3".to_string(), 5.0, "5".to_string()),
        ];
        let chart = Chart::bars("tokens", &points);
        assert_eq!(chart.bars.len(), 3);
        assert_eq!(chart.bars[0].height, 0);
        assert_eq!(chart.bars[1].height, HEIGHT - 20);
        assert_eq!(chart.bars[2].height, (HEIGHT - 20) / 2);
        assert_eq!(chart.top, "10");
        assert_eq!((chart.first.as_str(), chart.last.as_str()), ("d1", "d3"));
        assert!(chart.bars[1].x > chart.bars[0].x);
        let empty = Chart::bars("none", &[]);
        assert!(empty.bars.is_empty() && empty.top.is_empty());
    }
}
