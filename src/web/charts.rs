//! Charts as server-side SVG, drawn by charts-rs. Every chart also carries its figures as a
//! table, so screen readers and tests read the same numbers the picture shows.

use charts_rs::{BarChart, LineChart, Series, THEME_LIGHT, YAxisConfig};

/// The series colours, in order (charts-rs's light palette), shared by the SVG and the HTML legend.
pub const COLORS: [&str; 4] = ["#5470c6", "#91cc75", "#fac858", "#ee6666"];

/// One chart of a page: its picture (when it could be drawn), its legend and its data.
pub struct Chart {
    pub id: &'static str,
    pub title: String,
    pub svg: Option<String>,
    /// Each series' name and colour, shown as HTML above the picture (a legend drawn inside the
    /// SVG is measured with a font the browser may not use, and its entries overlapped).
    pub legend: Vec<(String, &'static str)>,
    /// Column headers of the data table: the category, then one per series.
    pub head: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

pub enum Kind {
    Line,
    Bar,
    HorizontalBar,
}

/// What the value axis measures: counts get whole-number ticks from 0, percentages 0-100 %.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Axis {
    Count,
    Percent,
}

/// One figure: the value drawn (`None` where suppressed or empty) and the text shown for it.
pub type Point = (Option<f32>, String);

/// A chart of `series` (a name and one point per category) over `categories`.
pub fn chart(
    id: &'static str,
    kind: Kind,
    axis: Axis,
    title: String,
    category_head: String,
    categories: Vec<String>,
    series: Vec<(String, Vec<Point>)>,
) -> Chart {
    let mut head = vec![category_head];
    head.extend(series.iter().map(|(n, _)| n.clone()));
    let rows = categories
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut row = vec![c.clone()];
            row.extend(series.iter().map(|(_, v)| v.get(i).map(|p| p.1.clone()).unwrap_or_default()));
            row
        })
        .collect();
    let legend = series.iter().zip(COLORS.iter().cycle()).map(|((n, _), c)| (n.clone(), *c)).collect();
    let values = series.into_iter().map(|(n, v)| (n, v.into_iter().map(|p| p.0).collect())).collect();
    let svg = if categories.is_empty() { None } else { draw(kind, axis, &categories, values) };
    Chart { id, title, svg, legend, head, rows }
}

/// The value axis: from 0 to a round top, split so that every tick is a whole number (counts) or
/// a multiple of 20 % (percentages). Returns (max, number of intervals).
pub fn value_axis(axis: Axis, values: impl Iterator<Item = f32>) -> (f32, usize) {
    if axis == Axis::Percent {
        return (100.0, 5);
    }
    let top = values.filter(|v| v.is_finite()).fold(0.0_f32, f32::max);
    if top <= 0.0 {
        return (5.0, 5);
    }
    // The smallest step of 1, 2 or 5 times a power of ten that fits the top in five intervals.
    let (mut step, mut k) = (1.0_f32, 0_i32);
    while step * 5.0 < top {
        k += 1;
        step = [1.0, 2.0, 5.0][(k % 3) as usize] * 10_f32.powi(k / 3);
    }
    let intervals = ((top / step).ceil() as usize).clamp(1, 5);
    (step * intervals as f32, intervals)
}

fn draw(kind: Kind, axis: Axis, categories: &[String], series: Vec<(String, Vec<Option<f32>>)>) -> Option<String> {
    if matches!(kind, Kind::HorizontalBar) {
        return Some(horizontal_bars(categories, &series, axis));
    }
    let (max, split) = value_axis(axis, series.iter().flat_map(|(_, v)| v.iter().flatten().copied()));
    let list: Vec<Series> = series.into_iter().map(|(n, v)| (n.as_str(), v).into()).collect();
    let x = categories.to_vec();
    let y = |c: &mut YAxisConfig| {
        c.min = Some(0.0);
        c.max = Some(max);
        c.split_number = split;
        c.formatter = Some(if axis == Axis::Percent { "{c}%".into() } else { "{c}".into() });
    };
    let drawn = match kind {
        Kind::Line => {
            let mut c = LineChart::new_with_theme(list, x, THEME_LIGHT);
            c.width = 600.0;
            c.height = 300.0;
            c.legend.show = Some(false);
            c.y_axis_configs.iter_mut().take(1).for_each(y);
            c.svg()
        }
        _ => {
            let mut c = BarChart::new_with_theme(list, x, THEME_LIGHT);
            c.width = 600.0;
            c.height = 300.0;
            c.legend.show = Some(false);
            c.y_axis_configs.iter_mut().take(1).for_each(y);
            c.svg()
        }
    };
    match drawn {
        Ok(svg) => Some(svg),
        Err(e) => {
            // The data table still shows the figures.
            tracing::warn!(error = %e, "chart could not be drawn");
            None
        }
    }
}

/// A label's width in pixels at 13 px, erring wide: CJK characters are a full em, others about
/// six tenths of one. The browser draws the label in whatever font it has; the column only has
/// to be wide enough.
fn label_width(text: &str) -> f32 {
    text.chars().map(|c| if (c as u32) >= 0x2E80 { 13.5 } else { 8.0 }).sum()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Horizontal bars (one band per category, one bar per series), drawn here rather than by
/// charts-rs, whose label column is sized with a font the browser may not have.
fn horizontal_bars(categories: &[String], series: &[(String, Vec<Option<f32>>)], axis: Axis) -> String {
    use std::fmt::Write;
    let (width, band, top_pad, bottom) = (600.0_f32, 34.0_f32, 8.0_f32, 26.0_f32);
    let left = categories.iter().map(|c| label_width(c)).fold(60.0_f32, f32::max).min(300.0) + 10.0;
    let right = width - 60.0;
    let height = top_pad + band * categories.len() as f32 + bottom;
    let (max, split) = value_axis(axis, series.iter().flat_map(|(_, v)| v.iter().flatten().copied()));
    let scale = |v: f32| left + (right - left) * (v.clamp(0.0, max) / max);
    let suffix = if axis == Axis::Percent { "%" } else { "" };
    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-size="13">"#
    );
    let plot_bottom = top_pad + band * categories.len() as f32;
    for t in 0..=split {
        let v = max * t as f32 / split as f32;
        let x = scale(v);
        let _ = write!(
            out,
            r##"<line x1="{x:.1}" y1="{top_pad}" x2="{x:.1}" y2="{plot_bottom}" stroke="#e0e6f1"/><text x="{x:.1}" y="{:.1}" text-anchor="middle" fill="#6e7079">{v}{suffix}</text>"##,
            plot_bottom + 18.0
        );
    }
    let bar = (band - 10.0) / series.len().max(1) as f32;
    for (i, c) in categories.iter().enumerate() {
        let y0 = top_pad + band * i as f32;
        let _ = write!(
            out,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end" fill="#464646">{}</text>"##,
            left - 8.0,
            y0 + band / 2.0 + 4.5,
            escape(c)
        );
        for (s, ((_, values), color)) in series.iter().zip(COLORS.iter().cycle()).enumerate() {
            let Some(v) = values.get(i).copied().flatten() else { continue };
            let y = y0 + 5.0 + bar * s as f32;
            let w = scale(v) - left;
            let _ = write!(
                out,
                r##"<rect x="{left:.1}" y="{y:.1}" width="{w:.1}" height="{:.1}" fill="{color}"/><text x="{:.1}" y="{:.1}" fill="#464646">{}{suffix}</text>"##,
                bar - 2.0,
                left + w + 4.0,
                y + bar / 2.0 + 4.0,
                if axis == Axis::Percent { format!("{v:.1}") } else { format!("{v:.0}") }
            );
        }
    }
    let _ =
        write!(out, r##"<line x1="{left}" y1="{top_pad}" x2="{left}" y2="{plot_bottom}" stroke="#6e7079"/></svg>"##);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_axes_have_whole_number_ticks_and_percentages_run_to_100() {
        let ticks = |top: f32| value_axis(Axis::Count, [top, 0.5].into_iter());
        assert_eq!(ticks(0.0), (1.0, 1), "a top under one still ticks at whole numbers");
        assert_eq!(value_axis(Axis::Count, std::iter::empty()), (5.0, 5));
        assert_eq!(ticks(6.0), (6.0, 3));
        assert_eq!(ticks(11.0), (15.0, 3));
        assert_eq!(ticks(48.0), (50.0, 5));
        assert_eq!(ticks(1234.0), (1500.0, 3));
        for top in [1.0, 3.0, 7.0, 19.0, 99.0, 101.0, 999.0, 12_345.0] {
            let (max, n) = ticks(top);
            let step = max / n as f32;
            assert!(max >= top && n <= 5 && step.fract() == 0.0, "{top}: {max}/{n}");
        }
        assert_eq!(value_axis(Axis::Percent, [42.0].into_iter()), (100.0, 5));
    }

    #[test]
    fn a_chart_is_svg_with_its_figures_in_a_table_and_escapes_names() {
        let c = chart(
            "t",
            Kind::HorizontalBar,
            Axis::Percent,
            "基层占比".into(),
            "机构".into(),
            vec!["东关镇卫生院".into(), "<script>x</script>".into()],
            vec![("占比".into(), vec![(Some(41.5), "41.5%".into()), (None, "<5".into())])],
        );
        let svg = c.svg.expect("drawn");
        assert!(svg.starts_with("<svg"), "{svg:.80}");
        assert!(!svg.contains("<script>"), "names are escaped inside the SVG");
        assert_eq!(
            c.rows,
            vec![vec!["东关镇卫生院".to_string(), "41.5%".into()], vec!["<script>x</script>".into(), "<5".into()]]
        );
        let empty = chart("e", Kind::Line, Axis::Count, "x".into(), "m".into(), vec![], vec![]);
        assert!(empty.svg.is_none());
    }
}
