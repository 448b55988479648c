//! Charts as server-side SVG, drawn by charts-rs. Every chart also carries its figures as a
//! table, so screen readers and tests read the same numbers the picture shows.

use charts_rs::{BarChart, HorizontalBarChart, LineChart, Series, THEME_LIGHT};

/// One chart of a page: its picture (when it could be drawn) and its data.
pub struct Chart {
    pub id: &'static str,
    pub title: String,
    pub svg: Option<String>,
    /// Column headers of the data table: the category, then one per series.
    pub head: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

pub enum Kind {
    Line,
    Bar,
    HorizontalBar,
}

/// One figure: the value drawn (`None` where suppressed or empty) and the text shown for it.
pub type Point = (Option<f32>, String);

/// A chart of `series` (a name and one point per category) over `categories`.
pub fn chart(
    id: &'static str,
    kind: Kind,
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
    let values = series.into_iter().map(|(n, v)| (n, v.into_iter().map(|p| p.0).collect())).collect();
    let svg = if categories.is_empty() { None } else { draw(kind, &categories, values) };
    Chart { id, title, svg, head, rows }
}

fn draw(kind: Kind, categories: &[String], series: Vec<(String, Vec<Option<f32>>)>) -> Option<String> {
    let list: Vec<Series> = series.into_iter().map(|(n, v)| (n.as_str(), v).into()).collect();
    let x = categories.to_vec();
    let height = match kind {
        Kind::HorizontalBar => (60 + 34 * categories.len()).clamp(200, 520) as f32,
        _ => 300.0,
    };
    let drawn = match kind {
        Kind::Line => {
            let mut c = LineChart::new_with_theme(list, x, THEME_LIGHT);
            c.width = 600.0;
            c.height = height;
            c.svg()
        }
        Kind::Bar => {
            let mut c = BarChart::new_with_theme(list, x, THEME_LIGHT);
            c.width = 600.0;
            c.height = height;
            c.svg()
        }
        Kind::HorizontalBar => {
            let mut c = HorizontalBarChart::new_with_theme(list, x, THEME_LIGHT);
            c.width = 600.0;
            c.height = height;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_is_svg_with_its_figures_in_a_table_and_escapes_names() {
        let c = chart(
            "t",
            Kind::HorizontalBar,
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
        let empty = chart("e", Kind::Line, "x".into(), "m".into(), vec![], vec![]);
        assert!(empty.svg.is_none());
    }
}
