//! Charts as SVG (plotters' SVG backend: text is left to the viewer's fonts, and no image
//! encoder joins the build).

use std::path::Path;

use plotters::prelude::*;

use crate::err;
use crate::error::Result;

/// One panel of line series: `(name, points)`.
pub struct Panel<'a> {
    pub title: &'a str,
    pub series: Vec<(&'a str, Vec<(f64, f64)>)>,
}

fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) =
        values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(1e-9);
    (lo - pad, hi + pad)
}

/// Panels side by side in a grid of `cols` columns, x = optimizer step.
pub fn line_panels(path: &Path, panels: &[Panel], cols: usize) -> Result<()> {
    let rows = panels.len().div_ceil(cols);
    let root = SVGBackend::new(path, (520 * cols as u32, 340 * rows as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err!("{}: {e}", path.display()))?;
    let areas = root.split_evenly((rows, cols));
    for (panel, area) in panels.iter().zip(areas) {
        let xs = range(panel.series.iter().flat_map(|(_, p)| p.iter().map(|q| q.0)));
        let ys = range(panel.series.iter().flat_map(|(_, p)| p.iter().map(|q| q.1)));
        let mut builder = ChartBuilder::on(&area);
        builder.margin(12).x_label_area_size(30).y_label_area_size(60);
        builder.caption(panel.title, ("sans-serif", 18));
        let mut chart = builder.build_cartesian_2d(xs.0..xs.1, ys.0..ys.1).map_err(|e| err!("{e}"))?;
        chart.configure_mesh().draw().map_err(|e| err!("{e}"))?;
        for (i, (name, points)) in panel.series.iter().enumerate() {
            let colour = Palette99::pick(i).to_rgba();
            let drawn = chart
                .draw_series(LineSeries::new(points.iter().copied(), colour.stroke_width(2)))
                .map_err(|e| err!("{e}"))?;
            drawn.label(*name).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], colour));
        }
        if panel.series.len() > 1 {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(|e| err!("{e}"))?;
        }
    }
    root.present().map_err(|e| err!("{}: {e}", path.display()))?;
    Ok(())
}

/// Grouped bars: one group per `groups` entry, one bar per series, values in [0, 1].
pub fn grouped_bars(path: &Path, title: &str, groups: &[String], series: &[(String, Vec<f64>)]) -> Result<()> {
    let width = (160 * groups.len().max(1) as u32 + 200).max(700);
    let root = SVGBackend::new(path, (width, 460)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err!("{}: {e}", path.display()))?;
    let ymax =
        series.iter().flat_map(|(_, v)| v.iter().copied()).filter(|v| v.is_finite()).fold(0.0f64, f64::max).max(1e-6)
            * 1.15;
    let mut builder = ChartBuilder::on(&root);
    builder.margin(16).x_label_area_size(40).y_label_area_size(50);
    builder.caption(title, ("sans-serif", 20));
    let n = groups.len();
    let mut chart = builder.build_cartesian_2d(0f64..n as f64, (-0.08 * ymax)..ymax).map_err(|e| err!("{e}"))?;
    chart.configure_mesh().disable_x_mesh().x_labels(0).draw().map_err(|e| err!("{e}"))?;
    // Group names inside the plot, under the bars (the y range starts below 0 for them).
    let names = groups
        .iter()
        .enumerate()
        .map(|(i, g)| Text::new(g.clone(), (i as f64 + 0.05, -0.03 * ymax), ("sans-serif", 12)));
    chart.draw_series(names).map_err(|e| err!("{e}"))?;
    let k = series.len().max(1) as f64;
    for (s, (name, values)) in series.iter().enumerate() {
        let colour = Palette99::pick(s).to_rgba();
        let bars = values.iter().enumerate().map(|(g, &v)| {
            let x0 = g as f64 + 0.1 + 0.8 * s as f64 / k;
            Rectangle::new([(x0, 0.0), (x0 + 0.8 / k, v)], colour.filled())
        });
        let drawn = chart.draw_series(bars).map_err(|e| err!("{e}"))?;
        drawn.label(name.as_str()).legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled()));
    }
    {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err!("{e}"))?;
    }
    root.present().map_err(|e| err!("{}: {e}", path.display()))?;
    Ok(())
}
