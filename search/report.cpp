#include "search/report.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "core/text.hpp"

namespace bitplan::search {
namespace {

// One scatter plot: x (ms or MB) against top-1 %, evaluations grey, the front blue (radius by
// size), baselines red squares with their names.
struct Point {
  double x, y, r;
  std::string label, css;
};

std::string scatter_svg(const std::string& title, const std::string& x_label,
                        const std::vector<Point>& points) {
  const double W = 640, H = 400, L = 60, R = 20, T = 30, B = 50;
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  for (const auto& p : points) {
    if (!std::isfinite(p.x) || !std::isfinite(p.y)) continue;
    x0 = std::min(x0, p.x), x1 = std::max(x1, p.x), y0 = std::min(y0, p.y), y1 = std::max(y1, p.y);
  }
  if (!std::isfinite(x0)) return "<p>(nothing to plot)</p>";
  const double xpad = std::max((x1 - x0) * 0.05, 1e-9), ypad = std::max((y1 - y0) * 0.05, 0.05);
  x0 -= xpad, x1 += xpad, y0 -= ypad, y1 += ypad;
  auto sx = [&](double x) { return L + (x - x0) / (x1 - x0) * (W - L - R); };
  auto sy = [&](double y) { return H - B - (y - y0) / (y1 - y0) * (H - T - B); };
  std::string svg = fmt::format(
      R"~(<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" font-family="sans-serif" font-size="11">)~"
      R"~(<text x="{}" y="18" font-size="14" font-weight="bold">{}</text>)~"
      R"~(<rect x="{}" y="{}" width="{}" height="{}" fill="none" stroke="#888"/>)~",
      W, H, L, html_text(title), L, T, W - L - R, H - T - B);
  for (int i = 0; i <= 4; ++i) {
    const double xv = x0 + (x1 - x0) * i / 4, yv = y0 + (y1 - y0) * i / 4;
    svg += fmt::format(R"~(<text x="{:.1f}" y="{}" text-anchor="middle">{:.3g}</text>)~", sx(xv),
                       H - B + 15, xv);
    svg += fmt::format(R"~(<text x="{}" y="{:.1f}" text-anchor="end">{:.2f}</text>)~", L - 5,
                       sy(yv) + 4, yv);
  }
  svg += fmt::format(R"~(<text x="{}" y="{}" text-anchor="middle">{}</text>)~", (L + W - R) / 2,
                     H - 12, html_text(x_label));
  svg += fmt::format(
      R"~(<text x="14" y="{}" transform="rotate(-90 14 {})" text-anchor="middle">top-1 accuracy (%)</text>)~",
      (T + H - B) / 2, (T + H - B) / 2);
  for (const auto& p : points) {
    if (!std::isfinite(p.x) || !std::isfinite(p.y)) continue;
    if (p.css == "baseline") {
      svg += fmt::format(
          R"~(<rect x="{:.1f}" y="{:.1f}" width="9" height="9" fill="#d62728"/><text x="{:.1f}" y="{:.1f}" fill="#d62728">{}</text>)~",
          sx(p.x) - 4.5, sy(p.y) - 4.5, sx(p.x) + 7, sy(p.y) - 6, html_text(p.label));
    } else {
      svg += fmt::format(
          R"~(<circle cx="{:.1f}" cy="{:.1f}" r="{:.1f}" fill="{}" fill-opacity="{}"><title>{}</title></circle>)~",
          sx(p.x), sy(p.y), p.r, p.css == "front" ? "#1f77b4" : "#999",
          p.css == "front" ? 0.8 : 0.35, html_text(p.label));
    }
  }
  return svg + "</svg>";
}

// Heat map of the sensitivity (log10 KL) per layer and option.
std::string heatmap_svg(const SearchResult& r) {
  std::vector<std::string> columns;
  for (const auto& l : r.space.layers)
    for (const auto& o : l.options)
      if (std::find(columns.begin(), columns.end(), o) == columns.end()) columns.push_back(o);
  const double cell_w = 70, cell_h = 16, left = 260, top = 40;
  const double W = left + cell_w * static_cast<double>(columns.size()) + 20;
  const double H = top + cell_h * static_cast<double>(r.space.layers.size()) + 20;
  double lo = INFINITY, hi = -INFINITY;
  for (const auto& row : r.sensitivity)
    for (double v : row)
      if (v > 0) lo = std::min(lo, std::log10(v)), hi = std::max(hi, std::log10(v));
  if (!std::isfinite(lo)) lo = hi = 0;
  std::string svg = fmt::format(
      R"~(<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" font-family="sans-serif" font-size="10">)~"
      R"~(<text x="4" y="14" font-size="13" font-weight="bold">Sensitivity: KL divergence to fp32 with only that layer quantized (log scale; grey = not offered, hatched = unsupported on the target)</text>)~",
      W, H);
  for (std::size_t c = 0; c < columns.size(); ++c)
    svg +=
        fmt::format(R"~(<text x="{:.1f}" y="{}" text-anchor="middle">{}</text>)~",
                    left + cell_w * (static_cast<double>(c) + 0.5), top - 6, html_text(columns[c]));
  for (std::size_t l = 0; l < r.space.layers.size(); ++l) {
    const double y = top + cell_h * static_cast<double>(l);
    svg += fmt::format(R"~(<text x="{}" y="{:.1f}" text-anchor="end">{}</text>)~", left - 4, y + 12,
                       html_text(r.space.layers[l].layer));
    for (std::size_t c = 0; c < columns.size(); ++c) {
      const auto& opts = r.space.layers[l].options;
      const auto it = std::find(opts.begin(), opts.end(), columns[c]);
      std::string fill = "#eee", tip = "not offered";
      if (it != opts.end()) {
        const auto o = static_cast<std::size_t>(it - opts.begin());
        if (!r.unsupported[l][o].empty()) {
          fill = "url(#hatch)";
          tip = r.unsupported[l][o];
        } else {
          const double v = r.sensitivity[l][o];
          const double t = v > 0 && hi > lo ? (std::log10(v) - lo) / (hi - lo) : 0;
          // white -> orange -> dark red
          const int red = 255 - static_cast<int>(100 * t), green = static_cast<int>(245 * (1 - t)),
                    blue = static_cast<int>(235 * (1 - t) * (1 - t));
          fill = fmt::format("rgb({},{},{})", red, green, blue);
          tip = fmt::format("KL {:.3g}, top-1 drop {:.2f} pt", v, 100 * r.sensitivity_drop[l][o]);
        }
      }
      svg += fmt::format(
          R"~(<rect x="{:.1f}" y="{:.1f}" width="{}" height="{}" fill="{}" stroke="#fff"><title>{}</title></rect>)~",
          left + cell_w * static_cast<double>(c), y, cell_w, cell_h, fill, html_text(tip));
    }
  }
  svg +=
      R"~(<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse"><path d="M0,6 L6,0" stroke="#bbb"/></pattern></defs>)~";
  return svg + "</svg>";
}

}  // namespace

std::string report_html(const SearchResult& r, const OutputInfo& info) {
  const bool has_latency = !r.target.empty();
  std::vector<Point> lat_points, size_points;
  std::set<std::size_t> on_front(r.front.begin(), r.front.end());
  double max_size = 1;
  for (const auto& e : r.evaluations) max_size = std::max(max_size, e.metrics.size_bytes);
  for (std::size_t i = 0; i < r.evaluations.size(); ++i) {
    const auto& e = r.evaluations[i];
    const bool f = on_front.count(i) != 0;
    const PlanMetrics& m = f && e.final_metrics ? *e.final_metrics : e.metrics;
    const double radius = 3 + 6 * std::sqrt(m.size_bytes / max_size);
    const std::string tip = fmt::format("{:.2f}% top-1, {:.3f} ms, {:.3f} MB", 100 * m.top1,
                                        m.latency_ms, m.size_bytes / 1e6);
    lat_points.push_back({m.latency_ms, 100 * m.top1, radius, tip, f ? "front" : "all"});
    size_points.push_back({m.size_bytes / 1e6, 100 * m.top1, 4, tip, f ? "front" : "all"});
  }
  for (const auto& b : r.baselines) {
    if (b.metrics.samples == 0) continue;
    const PlanMetrics& m = b.final_metrics ? *b.final_metrics : b.metrics;
    lat_points.push_back({m.latency_ms, 100 * m.top1, 0, b.name, "baseline"});
    size_points.push_back({m.size_bytes / 1e6, 100 * m.top1, 0, b.name, "baseline"});
  }
  std::string html = fmt::format(
      R"~(<!DOCTYPE html><html><head><meta charset="utf-8"><title>bitplan: {}</title>)~"
      R"~(<style>body{{font-family:sans-serif;margin:24px;max-width:1400px}}table{{border-collapse:collapse;font-size:12px}})~"
      R"~(td,th{{border:1px solid #ccc;padding:3px 6px;text-align:right}}th{{background:#f4f4f4}}td.l{{text-align:left}})~"
      R"~(.muted{{color:#777}}</style></head><body>)~"
      R"~(<h1>bitplan search: {}</h1><p>target <b>{}</b> &middot; policy <b>{}</b> &middot; objectives {} &middot; {}</p>)~"
      R"~(<p>fp32 top-1 {:.2f}% ({} samples) &middot; {} evaluations ({} run, {} from the results database) &middot; )~"
      R"~(front {} plans &middot; hypervolume {:.4f} (normalised, reference 1.1) &middot; time: sensitivity {:.1f} s, search {:.1f} s, final {:.1f} s &middot; {}</p>)~",
      html_text(info.model_name), html_text(info.model_name),
      html_text(r.target.empty() ? "(none)" : r.target), html_text(r.policy),
      html_text(fmt::format("{}", fmt::join(r.objective_names, ", "))),
      html_text(r.space_description), 100 * r.fp32.top1, r.fp32.samples, r.evaluations.size(),
      r.evaluations_run, r.evaluations_reused, r.front.size(), r.hypervolume, r.seconds_sensitivity,
      r.seconds_search, r.seconds_final, html_text(r.stop_reason));
  for (const auto& warning : r.target_warnings)
    html += fmt::format(R"~(<p style="color:#a40">warning: {}</p>)~", html_text(warning));
  if (has_latency)
    html += scatter_svg(
        "Accuracy vs predicted latency (front: blue, size as radius; uniform baselines: red)",
        "latency (ms, predicted from the profile)", lat_points);
  html += scatter_svg("Accuracy vs model size", "size (MB)", size_points);
  html +=
      "<h2>Front</h2><table><tr><th>plan</th><th>top-1 (final)</th><th>drop (pt)</th>"
      "<th>worst class drop (pt)</th><th>predicted latency (ms)</th><th>measured (ms)</th>"
      "<th>size (MB)</th><th>GBOPs</th></tr>";
  for (std::size_t k = 0; k < r.front.size(); ++k) {
    const auto& e = r.evaluations[r.front[k]];
    const PlanMetrics& m = e.final_metrics ? *e.final_metrics : e.metrics;
    html += fmt::format(
        "<tr><td class=l>plan_{:03d}.yaml</td><td>{:.2f}%</td><td>{:.2f}</td><td>{:.2f}</td>"
        "<td>{:.4f}</td><td>{}</td><td>{:.4f}</td><td>{:.3g}</td></tr>",
        k, 100 * m.top1, 100 * (r.fp32.top1 - m.top1), 100 * m.worst_class_drop,
        e.metrics.latency_ms,
        e.measured_latency_ms ? fmt::format("{:.4f} &plusmn; {:.4f}", *e.measured_latency_ms,
                                            e.measured_latency_iqr_ms.value_or(0) / 2)
                              : "<span class=muted>not this machine</span>",
        e.metrics.size_bytes / 1e6, e.metrics.gbops);
  }
  html +=
      "</table><h2>Uniform baselines</h2><table><tr><th>plan</th><th>top-1 (subset)</th>"
      "<th>top-1 (final)</th><th>predicted latency (ms)</th><th>size (MB)</th><th "
      "class=l>note</th></tr>";
  for (const auto& b : r.baselines)
    html += fmt::format(
        "<tr><td class=l>{}</td><td>{:.2f}%</td><td>{}</td><td>{}</td><td>{:.4f}</td><td "
        "class=l>{}</td></tr>",
        html_text(b.name), 100 * b.metrics.top1,
        b.final_metrics ? fmt::format("{:.2f}%", 100 * b.final_metrics->top1) : "&ndash;",
        std::isfinite(b.metrics.latency_ms) ? fmt::format("{:.4f}", b.metrics.latency_ms)
                                            : "&ndash;",
        b.metrics.size_bytes / 1e6, html_text(b.unsupported));
  html += "</table><h2>Per-layer choices of the front plans</h2><table><tr><th>layer</th>";
  for (std::size_t k = 0; k < r.front.size(); ++k) html += fmt::format("<th>{:03d}</th>", k);
  html += "</tr>";
  for (std::size_t l = 0; l < r.space.layers.size(); ++l) {
    html += fmt::format("<tr><td class=l>{}</td>", html_text(r.space.layers[l].layer));
    for (const auto i : r.front)
      html += fmt::format(
          "<td>{}</td>",
          html_text(
              r.space.layers[l].options[static_cast<std::size_t>(r.evaluations[i].genome[l])]));
    html += "</tr>";
  }
  html += "</table><h2>Sensitivity</h2>" + heatmap_svg(r);
  html += fmt::format("<p class=muted>{}</p></body></html>\n", html_text(info.command_line));
  return html;
}

}  // namespace bitplan::search
