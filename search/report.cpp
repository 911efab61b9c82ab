#include "search/report.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "core/text.hpp"

namespace bitplan::search {
namespace {

// SVG text cannot be measured without a browser, so every size below comes from this
// estimate: advances per kind of character, in em, at or above those of DejaVu Sans, the
// widest common default sans-serif (capitals and digits matter: baseline names are W4A8,
// W4g128A16); narrower fonts (Arial, Liberation Sans) then leave room rather than clip.
double text_width(std::string_view text, double font_px, bool bold = false) {
  constexpr std::string_view kNarrow = " .,:;'!|()[]/-ijlft";
  double em = 0;
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if ((byte & 0xC0) == 0x80) continue;  // a UTF-8 continuation byte, not a new character
    if (kNarrow.find(c) != std::string_view::npos)
      em += 0.36;
    else if ((c >= 'A' && c <= 'Z') || c == 'm' || c == 'w' || c == '%')
      em += 0.8;
    else
      em += 0.64;  // lowercase, digits, and anything else
  }
  return em * font_px * (bold ? 1.1 : 1);
}

// `text` broken at spaces into lines no wider than `max_width`; a word wider than that keeps
// a line of its own.
std::vector<std::string> wrap_text(const std::string& text, double max_width, double font_px,
                                   bool bold = false) {
  std::vector<std::string> lines;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find(' ', start);
    if (end == std::string::npos) end = text.size();
    const std::string word = text.substr(start, end - start);
    if (!lines.empty() && text_width(lines.back() + " " + word, font_px, bold) <= max_width)
      lines.back() += " " + word;
    else
      lines.push_back(word);
    start = end + 1;
  }
  return lines;
}

// One <text> per line, `line_height` apart from the baseline `y`, each carrying `attributes`.
std::string text_lines_svg(const std::vector<std::string>& lines, double x, double y,
                           double line_height, std::string_view attributes) {
  std::string svg;
  for (std::size_t i = 0; i < lines.size(); ++i)
    svg += fmt::format(R"~(<text x="{:.1f}" y="{:.1f}" {}>{}</text>)~", x,
                       y + line_height * static_cast<double>(i), attributes, html_text(lines[i]));
  return svg;
}

// A sample count, 1234567 -> "1,234,567"
std::string grouped(std::int64_t count) {
  const std::string digits = std::to_string(count);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

// The sample counts behind the numbers of one kind (subset or final), as the legend states
// them: "1,000 samples", or "500–1,000 samples" where plans came from runs of other subset
// sizes (the results database). Evaluations stopped early saw fewer; they count only where
// nothing else does, and the hover text gives their own count.
struct SampleCounts {
  std::vector<std::int64_t> complete, stopped_early;

  void add(const PlanMetrics& m) {
    (m.stopped_early ? stopped_early : complete).push_back(m.samples);
  }
  bool empty() const { return complete.empty() && stopped_early.empty(); }
  std::string text() const {
    const auto& counts = complete.empty() ? stopped_early : complete;
    if (counts.empty()) return "no samples";
    const auto [fewest, most] = std::minmax_element(counts.begin(), counts.end());
    if (*fewest == *most) return grouped(*most) + " samples";
    return fmt::format("{}\u2013{} samples", grouped(*fewest), grouped(*most));
  }
};

struct Box {
  double x0, y0, x1, y1;
  bool overlaps(const Box& o) const { return x0 < o.x1 && o.x0 < x1 && y0 < o.y1 && o.y0 < y1; }
  bool inside(const Box& o) const { return x0 >= o.x0 && x1 <= o.x1 && y0 >= o.y0 && y1 <= o.y1; }
};

Box box_around(double x, double y, double half_width, double half_height) {
  return {x - half_width, y - half_height, x + half_width, y + half_height};
}

// Where a `width` x `height` label of the point (x, y) goes: the first of eight directions
// around it, at growing distances, whose box stays in `area` and covers no placed label and
// no marker. In a plot too crowded for that, markers may be covered, labels still not; the
// last resort, right of the point, is for a plot with no free place at all.
Box place_label(double x, double y, double width, double height, const Box& area,
                const std::vector<Box>& labels, const std::vector<Box>& markers) {
  // (dx, dy): which side of the point the box sits on; right and left first, as they read
  // best beside a marker.
  constexpr int kDirections[][2] = {{1, 0},   {-1, 0}, {1, -1}, {1, 1},
                                    {-1, -1}, {-1, 1}, {0, -1}, {0, 1}};
  constexpr int kRings = 40;
  constexpr double kFirstDistance = 7, kRingStep = 11;
  auto candidate = [&](int ring, const int* direction) {
    const double distance =
        (kFirstDistance + kRingStep * ring) * (direction[0] != 0 && direction[1] != 0 ? 0.75 : 1);
    const double left = x + distance * direction[0] -
                        (direction[0] < 0    ? width
                         : direction[0] == 0 ? width / 2
                                             : 0);
    const double top = y + distance * direction[1] -
                       (direction[1] < 0    ? height
                        : direction[1] == 0 ? height / 2
                                            : 0);
    return Box{left, top, left + width, top + height};
  };
  auto free_of = [](const Box& box, const std::vector<Box>& taken) {
    return std::none_of(taken.begin(), taken.end(), [&](const Box& t) { return box.overlaps(t); });
  };
  for (const bool avoid_markers : {true, false})
    for (int ring = 0; ring < kRings; ++ring)
      for (const auto& direction : kDirections) {
        const Box box = candidate(ring, direction);
        if (box.inside(area) && free_of(box, labels) && (!avoid_markers || free_of(box, markers)))
          return box;
      }
  return candidate(0, kDirections[0]);
}

// The quality the report plots and tabulates: the run's metric (top-1 in %, or perplexity,
// mean cosine to fp32, KL to fp32).
struct Quality {
  std::string_view name;  // "top-1"
  std::string_view axis;  // the charts' y-axis label
  std::string_view unit;  // after a value: "%" or ""
  double (*value)(const PlanMetrics&);
};

Quality quality_of(MetricKind metric) {
  switch (metric) {
    case MetricKind::perplexity:
      return {"perplexity", "perplexity", "", [](const PlanMetrics& m) { return m.perplexity; }};
    case MetricKind::embedding:
      return {"cosine", "cosine to fp32", "", [](const PlanMetrics& m) { return m.cosine; }};
    case MetricKind::fidelity:
      return {"KL", "KL to fp32 (nats)", "", [](const PlanMetrics& m) { return m.kl; }};
    case MetricKind::top1:
      break;
  }
  return {"top-1", "top-1 accuracy (%)", "%", [](const PlanMetrics& m) { return 100 * m.top1; }};
}

enum class PlotKind { explored, front, baseline };

struct PlotPoint {
  PlotKind kind;
  double x;                          // latency (ms) or size (MB)
  double subset_top1;                // % on the search subset
  std::optional<double> final_top1;  // % on the final selection, where re-evaluated
  double radius;                     // of the circles of explored and front plans
  std::string name, tip;             // name: a baseline's label; tip: the hover text
};

// One scatter plot of top-1 against latency or size. Every filled marker is at the plan's
// top-1 on the search subset, the number the search compared; a re-evaluated plan (the
// front, the baselines) also has an open marker at its final top-1, joined by a line, so
// numbers of different samples never share a marker kind.
struct ScatterChart {
  std::string title, x_label;
  std::string y_label = "top-1 accuracy (%)";
  std::vector<PlotPoint> points;
  std::string subset_samples, final_samples;  // final_samples "" without a final re-evaluation
  std::vector<std::string> notes;             // under the legend
};

const char* plot_colour(PlotKind kind) {
  switch (kind) {
    case PlotKind::explored:
      return "#999";
    case PlotKind::front:
      return "#1f77b4";
    case PlotKind::baseline:
      return "#d62728";
  }
  return "#000";
}

const char* plot_class(PlotKind kind) {
  switch (kind) {
    case PlotKind::explored:
      return "explored";
    case PlotKind::front:
      return "front";
    case PlotKind::baseline:
      return "baseline";
  }
  return "";
}

constexpr double kBaselineHalfSide = 4.5;  // of a baseline's square marker

// A filled marker (the subset number) or an open one (the final number) at (x, y).
// `css` names what it marks (explored, front, baseline, final), or "legend".
std::string marker_svg(const PlotPoint& p, double x, double y, bool final_number,
                       std::string_view css) {
  const char* colour = plot_colour(p.kind);
  const std::string paint =
      final_number ? fmt::format(R"~(fill="#fff" stroke="{}" stroke-width="1.5")~", colour)
                   : fmt::format(R"~(fill="{}" fill-opacity="{}")~", colour,
                                 p.kind == PlotKind::explored ? 0.45 : 0.85);
  if (p.kind == PlotKind::baseline)
    return fmt::format(
        R"~(<rect class="{}" x="{:.1f}" y="{:.1f}" width="{}" height="{}" {}><title>{}</title></rect>)~",
        css, x - kBaselineHalfSide, y - kBaselineHalfSide, 2 * kBaselineHalfSide,
        2 * kBaselineHalfSide, paint, html_text(p.tip));
  return fmt::format(
      R"~(<circle class="{}" cx="{:.1f}" cy="{:.1f}" r="{:.1f}" {}><title>{}</title></circle>)~",
      css, x, y, p.radius, paint, html_text(p.tip));
}

std::string scatter_svg(const ScatterChart& chart) {
  // Margins: L for the y tick labels and axis name, R for half the widest x tick label
  // (0.00399) centred on the plot's right edge.
  const double W = 640, L = 60, R = 30, plot_height = 320, title_px = 14, small_px = 11;
  // A label's box: the line box of 11 px text (ascent 10.2 px, descent 2.6 px in DejaVu Sans)
  // and a margin either side for a font wider than the estimate.
  const double label_ascent = 10.5, label_height = 13.5, label_margin = 2;
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  for (const auto& p : chart.points) {
    if (!std::isfinite(p.x) || !std::isfinite(p.subset_top1)) continue;
    x0 = std::min(x0, p.x), x1 = std::max(x1, p.x);
    for (const double y : {p.subset_top1, p.final_top1.value_or(p.subset_top1)})
      y0 = std::min(y0, y), y1 = std::max(y1, y);
  }
  if (!std::isfinite(x0)) return "<p>(nothing to plot)</p>";
  const double xpad = std::max((x1 - x0) * 0.05, 1e-9), ypad = std::max((y1 - y0) * 0.05, 0.05);
  x0 -= xpad, x1 += xpad, y0 -= ypad, y1 += ypad;

  const auto title_lines = wrap_text(chart.title, W - L - 4, title_px, true);
  const double T = 18 * static_cast<double>(title_lines.size()) + 12;
  const double plot_bottom = T + plot_height;
  auto sx = [&](double x) { return L + (x - x0) / (x1 - x0) * (W - L - R); };
  auto sy = [&](double y) { return plot_bottom - (y - y0) / (y1 - y0) * plot_height; };

  std::string body = text_lines_svg(title_lines, L, 18, 18,
                                    R"~(class="chart-title" font-size="14" font-weight="bold")~");
  body += fmt::format(
      R"~(<rect class="plot-frame" x="{}" y="{}" width="{}" height="{}" fill="none" stroke="#888"/>)~",
      L, T, W - L - R, plot_height);
  for (int i = 0; i <= 4; ++i) {
    const double xv = x0 + (x1 - x0) * i / 4, yv = y0 + (y1 - y0) * i / 4;
    body += fmt::format(R"~(<text x="{:.1f}" y="{}" text-anchor="middle">{:.3g}</text>)~", sx(xv),
                        plot_bottom + 15, xv);
    body += fmt::format(R"~(<text x="{}" y="{:.1f}" text-anchor="end">{:.2f}</text>)~", L - 5,
                        sy(yv) + 4, yv);
  }
  body += fmt::format(R"~(<text x="{}" y="{}" text-anchor="middle">{}</text>)~", (L + W - R) / 2,
                      plot_bottom + 36, html_text(chart.x_label));
  body += fmt::format(
      R"~(<text x="14" y="{0}" transform="rotate(-90 14 {0})" text-anchor="middle">{1}</text>)~",
      T + plot_height / 2, html_text(chart.y_label));

  // Markers: explored plans under the lines to the final numbers, under the front and the
  // baselines; the baselines' labels last, placed clear of every marker but the explored
  // plans' filled ones (too many to avoid) and of every line to a final number.
  std::vector<Box> markers;
  std::string explored, lines, marked;
  for (const auto& p : chart.points) {
    if (!std::isfinite(p.x) || !std::isfinite(p.subset_top1)) continue;
    const double x = sx(p.x), y = sy(p.subset_top1);
    const double half = p.kind == PlotKind::baseline ? kBaselineHalfSide : p.radius;
    (p.kind == PlotKind::explored ? explored : marked) +=
        marker_svg(p, x, y, false, plot_class(p.kind));
    if (p.kind != PlotKind::explored) markers.push_back(box_around(x, y, half, half));
    if (!p.final_top1) continue;
    const double final_y = sy(*p.final_top1);
    lines += fmt::format(
        R"~(<line class="re-evaluation" x1="{0:.1f}" y1="{1:.1f}" x2="{0:.1f}" y2="{2:.1f}" stroke="{3}"/>)~",
        x, y, final_y, plot_colour(p.kind));
    marked += marker_svg(p, x, final_y, true, "final");
    markers.push_back(box_around(x, final_y, half, half));
    markers.push_back({x - 1, std::min(y, final_y), x + 1, std::max(y, final_y)});  // the line
  }
  const Box label_area{L + 2, T + 2, W - R - 2, plot_bottom - 2};
  std::vector<Box> labels;
  std::string label_svg;
  for (const auto& p : chart.points) {
    if (p.kind != PlotKind::baseline || !std::isfinite(p.x) || !std::isfinite(p.subset_top1))
      continue;
    const double x = sx(p.x), y = sy(p.subset_top1);
    const Box box = place_label(x, y, text_width(p.name, small_px) + 2 * label_margin, label_height,
                                label_area, labels, markers);
    labels.push_back(box);
    // A label moved away from its marker keeps a leader line to it.
    const double near_x = std::clamp(x, box.x0, box.x1), near_y = std::clamp(y, box.y0, box.y1);
    if (std::hypot(near_x - x, near_y - y) > 9)
      label_svg += fmt::format(
          R"~(<line x1="{:.1f}" y1="{:.1f}" x2="{:.1f}" y2="{:.1f}" stroke="#d62728" stroke-opacity="0.6"/>)~",
          x, y, near_x, near_y);
    label_svg += fmt::format(
        R"~(<text class="baseline-label" x="{:.1f}" y="{:.1f}" fill="#d62728">{}</text>)~",
        box.x0 + label_margin, box.y0 + label_ascent, html_text(p.name));
  }
  body += explored + lines + marked + label_svg;

  // Legend: a row (wrapped) of marker kinds, each a sample marker whose hover text is its
  // name, then the notes.
  std::vector<std::pair<PlotPoint, bool>> entries = {
      // (sample, final number)
      {{PlotKind::explored, 0, 0, {}, 4, "", "explored plan"}, false},
      {{PlotKind::front, 0, 0, {}, 4, "", "front plan"}, false},
      {{PlotKind::baseline, 0, 0, {}, 4, "", "uniform baseline"}, false}};
  if (!chart.final_samples.empty())
    entries.push_back({{PlotKind::front, 0, 0, {}, 4, "", "final re-evaluation"}, true});
  double legend_x = L, legend_y = plot_bottom + 58;
  for (const auto& [sample, final_number] : entries) {
    const double entry_width = 14 + text_width(sample.tip, small_px) + 18;
    if (legend_x > L && legend_x + entry_width > W - R) legend_x = L, legend_y += 16;
    body += "<g class=\"legend\">" +
            marker_svg(sample, legend_x + 5, legend_y - 4, final_number, "legend");
    body += fmt::format(R"~(<text x="{:.1f}" y="{:.1f}">{}</text></g>)~", legend_x + 14, legend_y,
                        html_text(sample.tip));
    legend_x += entry_width;
  }
  std::vector<std::string> notes = {
      chart.final_samples.empty()
          ? fmt::format("Top-1 on the search subset ({}).", chart.subset_samples)
          : fmt::format("Filled markers: top-1 on the search subset ({}), the numbers the "
                        "search compared. Open markers, joined to them by a line: the same "
                        "plan's top-1 on the final selection ({}).",
                        chart.subset_samples, chart.final_samples)};
  notes.insert(notes.end(), chart.notes.begin(), chart.notes.end());
  double note_y = legend_y + 20;
  for (const auto& note : notes) {
    const auto note_lines = wrap_text(note, W - L - R, small_px);
    body += text_lines_svg(note_lines, L, note_y, 14, R"~(fill="#555")~");
    note_y += 14 * static_cast<double>(note_lines.size());
  }
  const double H = note_y;
  return fmt::format(
             R"~(<svg xmlns="http://www.w3.org/2000/svg" width="{0}" height="{1}" viewBox="0 0 {0} {1}" font-family="sans-serif" font-size="11">)~",
             W, H) +
         body + "</svg>";
}

// Colour of a sensitivity at `t` in [0, 1] of the heat map's log scale: white, orange, dark
// red.
std::string heat_colour(double t) {
  const int red = 255 - static_cast<int>(100 * t), green = static_cast<int>(245 * (1 - t)),
            blue = static_cast<int>(235 * (1 - t) * (1 - t));
  return fmt::format("rgb({},{},{})", red, green, blue);
}

// The heat map's colour scale at (x, y): a gradient bar from the least to the most sensitive
// (layer, option) with its end values and the powers of ten between, then swatches of the
// cells that have no number. Returns the SVG and its width.
std::pair<std::string, double> colour_scale_svg(double x, double y, double log_lo, double log_hi,
                                                bool any_positive) {
  const double bar_width = 240, bar_height = 10, px = 10;
  std::string svg = "<g class=\"colour-scale\">";
  svg += fmt::format(R"~(<text x="{}" y="{}">KL divergence to fp32 (log scale)</text>)~", x, y);
  const double bar_top = y + 5;
  if (!any_positive || log_hi - log_lo < 1e-12) {
    // One value (or none above 0): a single swatch of the lowest colour.
    svg += fmt::format(
        R"~(<rect x="{}" y="{}" width="{}" height="{}" fill="{}" stroke="#888"/><text x="{}" y="{}">{}</text>)~",
        x, bar_top, bar_height * 2, bar_height, heat_colour(0), x + bar_height * 2 + 6, bar_top + 9,
        any_positive ? fmt::format("{:.2g}", std::pow(10, log_lo)) : "0 everywhere");
  } else {
    svg += R"~(<defs><linearGradient id="kl-scale">)~";
    for (int i = 0; i <= 10; ++i)
      svg +=
          fmt::format(R"~(<stop offset="{}" stop-color="{}"/>)~", i / 10.0, heat_colour(i / 10.0));
    svg += "</linearGradient></defs>";
    svg += fmt::format(
        R"~(<rect x="{}" y="{}" width="{}" height="{}" fill="url(#kl-scale)" stroke="#888"/>)~", x,
        bar_top, bar_width, bar_height);
    auto at = [&](double log_value) {
      return x + (log_value - log_lo) / (log_hi - log_lo) * bar_width;
    };
    // The ends first, aligned inside the bar's span, so a power of ten too close to one
    // gives way.
    struct Tick {
      double log_value;
      std::string label;
      std::string_view anchor;  // SVG text-anchor
    };
    std::vector<Tick> ticks = {{log_lo, fmt::format("{:.2g}", std::pow(10, log_lo)), "start"},
                               {log_hi, fmt::format("{:.2g}", std::pow(10, log_hi)), "end"}};
    const int first_decade = static_cast<int>(std::ceil(log_lo)),
              last_decade = static_cast<int>(std::floor(log_hi));
    const int decade_step = std::max(1, (last_decade - first_decade + 1 + 5) / 6);
    for (int k = first_decade; k <= last_decade; k += decade_step)
      ticks.push_back({static_cast<double>(k), fmt::format("1e{}", k), "middle"});
    std::vector<Box> placed;
    for (const auto& tick : ticks) {
      const double tick_x = at(tick.log_value), width = text_width(tick.label, px);
      const double left = tick.anchor == "start" ? tick_x
                          : tick.anchor == "end" ? tick_x - width
                                                 : tick_x - width / 2;
      const Box box{left - 3, 0, left + width + 3, 1};
      if (std::any_of(placed.begin(), placed.end(), [&](const Box& b) { return b.overlaps(box); }))
        continue;
      placed.push_back(box);
      svg += fmt::format(
          R"~(<line x1="{0:.1f}" y1="{1}" x2="{0:.1f}" y2="{2}" stroke="#555"/><text class="scale-tick" x="{0:.1f}" y="{3}" text-anchor="{4}">{5}</text>)~",
          tick_x, bar_top + bar_height, bar_top + bar_height + 3, bar_top + bar_height + 14,
          tick.anchor, html_text(tick.label));
    }
  }
  // Swatches beside the bar for the cells without a number.
  double swatch_x = x + bar_width + 24;
  std::string swatches;
  for (const auto& [fill, text] :
       {std::pair{"#eee", "not offered"}, std::pair{"url(#hatch)", "unsupported on the target"}}) {
    swatches += fmt::format(
        R"~(<rect x="{:.1f}" y="{}" width="16" height="{}" fill="{}" stroke="#ccc"/><text x="{:.1f}" y="{}">{}</text>)~",
        swatch_x, bar_top, bar_height, fill, swatch_x + 20, bar_top + 9, text);
    swatch_x += 20 + text_width(text, px) + 14;
  }
  return {svg + swatches + "</g>", swatch_x - x};
}

// Heat map of the sensitivity (log10 KL) per layer and option, sized to its longest names.
std::string heatmap_svg(const SearchResult& r) {
  std::vector<std::string> columns;
  for (const auto& l : r.space.layers)
    for (const auto& o : l.options)
      if (std::find(columns.begin(), columns.end(), o) == columns.end()) columns.push_back(o);
  const double px = 10, cell_h = 16;
  double cell_w = 70, label_width = 40;
  for (const auto& c : columns) cell_w = std::max(cell_w, text_width(c, px) + 10);
  for (const auto& l : r.space.layers) label_width = std::max(label_width, text_width(l.layer, px));
  const double left = label_width + 12;
  const double grid_bottom_offset = cell_h * static_cast<double>(r.space.layers.size());
  double lo = INFINITY, hi = -INFINITY;
  for (const auto& row : r.sensitivity)
    for (double v : row)
      if (v > 0) lo = std::min(lo, std::log10(v)), hi = std::max(hi, std::log10(v));
  const bool any_positive = std::isfinite(lo);
  if (!any_positive) lo = hi = 0;

  const double min_width = 560;
  double W = std::max(left + cell_w * static_cast<double>(columns.size()) + 20, min_width);
  const auto title_lines = wrap_text(
      "Sensitivity: KL divergence to fp32 with only that layer quantized", W - 8, 13, true);
  const double top = 18 * static_cast<double>(title_lines.size()) + 26;
  const double scale_y = top + grid_bottom_offset + 22;
  auto [scale, scale_width] = colour_scale_svg(4, scale_y, lo, hi, any_positive);
  W = std::max(W, 4 + scale_width);
  const double H = scale_y + 36;

  std::string svg = fmt::format(
      R"~(<svg xmlns="http://www.w3.org/2000/svg" width="{0:.0f}" height="{1:.0f}" viewBox="0 0 {0:.0f} {1:.0f}" font-family="sans-serif" font-size="10">)~"
      R"~(<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse"><path d="M0,6 L6,0" stroke="#bbb"/></pattern></defs>)~",
      std::ceil(W), std::ceil(H));
  svg += text_lines_svg(title_lines, 4, 16, 18,
                        R"~(class="chart-title" font-size="13" font-weight="bold")~");
  for (std::size_t c = 0; c < columns.size(); ++c)
    svg +=
        fmt::format(R"~(<text x="{:.1f}" y="{}" text-anchor="middle">{}</text>)~",
                    left + cell_w * (static_cast<double>(c) + 0.5), top - 6, html_text(columns[c]));
  for (std::size_t l = 0; l < r.space.layers.size(); ++l) {
    const double y = top + cell_h * static_cast<double>(l);
    svg += fmt::format(R"~(<text x="{:.1f}" y="{:.1f}" text-anchor="end">{}</text>)~", left - 4,
                       y + 12, html_text(r.space.layers[l].layer));
    for (std::size_t c = 0; c < columns.size(); ++c) {
      const auto& opts = r.space.layers[l].options;
      const auto it = std::find(opts.begin(), opts.end(), columns[c]);
      std::string fill = "#eee", tip = "not offered";
      if (it != opts.end()) {
        const auto o = static_cast<std::size_t>(it - opts.begin());
        if (!r.unsupported[l][o].empty()) {
          fill = "url(#hatch)";
          tip = r.unsupported[l][o];
        } else if (l >= r.sensitivity.size() || o >= r.sensitivity[l].size() ||
                   l >= r.sensitivity_drop.size() || o >= r.sensitivity_drop[l].size()) {
          // A search stopped during the sensitivity stage has measured only the first layers.
          tip = "not measured (the search stopped first)";
        } else {
          const double v = r.sensitivity[l][o];
          fill = heat_colour(v > 0 && hi > lo ? (std::log10(v) - lo) / (hi - lo) : 0);
          tip = fmt::format("KL {:.3g}, top-1 drop {:.2f} pt", v, 100 * r.sensitivity_drop[l][o]);
        }
      }
      svg += fmt::format(
          R"~(<rect x="{:.1f}" y="{:.1f}" width="{:.1f}" height="{}" fill="{}" stroke="#fff"><title>{}</title></rect>)~",
          left + cell_w * static_cast<double>(c), y, cell_w, cell_h, fill, html_text(tip));
    }
  }
  return svg + scale + "</svg>";
}
}  // namespace

std::string report_html(const SearchResult& r, const OutputInfo& info) {
  const bool has_latency = !r.target.empty();
  // The charts: every plan at its subset top-1, re-evaluated ones also at their final top-1.
  const std::string target = r.target.empty() ? "the target" : r.target;
  ScatterChart latency_chart, size_chart;
  latency_chart.title = "Accuracy vs predicted latency";
  latency_chart.x_label = "latency (ms, predicted from the profile)";
  size_chart.title = "Accuracy vs model size";
  size_chart.x_label = "size (MB)";
  latency_chart.notes.push_back("Marker radius: model size.");
  SampleCounts subset_counts, final_counts;
  // The run's metric on the y axis (top-1 in % unless it is another).
  const Quality quality = quality_of(r.metric);
  latency_chart.y_label = size_chart.y_label = std::string(quality.axis);
  if (r.metric != MetricKind::top1) {
    latency_chart.title = fmt::format("{} vs predicted latency", quality.axis);
    size_chart.title = fmt::format("{} vs model size", quality.axis);
  }
  const auto value_text = [&](double v) {
    return r.metric == MetricKind::top1 ? fmt::format("{:.2f}%", v) : fmt::format("{:.5g}", v);
  };
  auto final_top1 = [&](const std::optional<PlanMetrics>& m) -> std::optional<double> {
    if (!m) return std::nullopt;
    final_counts.add(*m);
    return quality.value(*m);
  };
  auto top1_text = [&](const PlanMetrics& m, std::string_view on) {
    return fmt::format(
        "{} {}{}", value_text(quality.value(m)), on,
        m.stopped_early ? fmt::format(" (stopped early, {} samples)", m.samples) : "");
  };
  auto tip = [&](const std::string& name, const PlanMetrics& subset,
                 const std::optional<PlanMetrics>& fin) {
    return fmt::format("{}{} {}{}, {:.3f} ms, {:.3f} MB, {:.2f} bits per weight", name,
                       quality.name, top1_text(subset, "on the subset"),
                       fin ? ", " + top1_text(*fin, "final") : "", subset.latency_ms,
                       subset.size_bytes / 1e6, subset.bits_per_weight);
  };
  double max_size = 1;
  for (const auto& e : r.evaluations) max_size = std::max(max_size, e.metrics.size_bytes);
  for (std::size_t i = 0; i < r.evaluations.size(); ++i) {
    const auto& e = r.evaluations[i];
    const auto front_at = std::find(r.front.begin(), r.front.end(), i);
    const bool on_front = front_at != r.front.end();
    const PlotKind kind = on_front ? PlotKind::front : PlotKind::explored;
    const std::string name =
        on_front ? plan_file_name(static_cast<std::size_t>(front_at - r.front.begin())) + ": " : "";
    const auto fin = final_top1(e.final_metrics);
    subset_counts.add(e.metrics);
    const std::string hover = tip(name, e.metrics, e.final_metrics);
    latency_chart.points.push_back({kind, e.metrics.latency_ms, quality.value(e.metrics), fin,
                                    3 + 6 * std::sqrt(e.metrics.size_bytes / max_size), "", hover});
    size_chart.points.push_back(
        {kind, e.metrics.size_bytes / 1e6, quality.value(e.metrics), fin, 4, "", hover});
  }
  std::vector<std::string> without_latency;
  for (const auto& b : r.baselines) {
    if (b.metrics.samples == 0) continue;
    const auto fin = final_top1(b.final_metrics);
    subset_counts.add(b.metrics);
    const std::string hover = tip(b.name + ": ", b.metrics, b.final_metrics);
    latency_chart.points.push_back({PlotKind::baseline, b.metrics.latency_ms,
                                    quality.value(b.metrics), fin, 0, b.name, hover});
    size_chart.points.push_back({PlotKind::baseline, b.metrics.size_bytes / 1e6,
                                 quality.value(b.metrics), fin, 0, b.name, hover});
    if (!std::isfinite(b.metrics.latency_ms)) without_latency.push_back(b.name);
  }
  if (!without_latency.empty())
    latency_chart.notes.push_back(
        fmt::format("Not drawn, no latency on {}: {}.", target, fmt::join(without_latency, ", ")));
  for (ScatterChart* chart : {&latency_chart, &size_chart}) {
    chart->subset_samples = subset_counts.text();
    if (!final_counts.empty()) chart->final_samples = final_counts.text();
    if (!subset_counts.stopped_early.empty() || !final_counts.stopped_early.empty())
      chart->notes.push_back(
          "Plans far below the accuracy constraint stopped early: their markers stand for fewer "
          "samples (the hover text says how many).");
  }

  std::string html = fmt::format(
      R"~(<!DOCTYPE html><html><head><meta charset="utf-8"><title>bitplan: {}</title>)~"
      R"~(<style>body{{font-family:sans-serif;margin:24px;max-width:1400px}}table{{border-collapse:collapse;font-size:12px}})~"
      R"~(td,th{{border:1px solid #ccc;padding:3px 6px;text-align:right}}th{{background:#f4f4f4}}td.l{{text-align:left}})~"
      R"~(svg{{max-width:100%;height:auto;vertical-align:top;margin:0 8px 16px 0}})~"
      R"~(.muted{{color:#777}}</style></head><body>)~"
      R"~(<h1>bitplan search: {}</h1><p>target <b>{}</b> &middot; policy <b>{}</b> &middot; objectives {} &middot; {}</p>)~"
      R"~(<p>fp32 {} {} ({} samples) &middot; {} evaluations ({} run, {} from the results database) &middot; )~"
      R"~(front {} plans &middot; hypervolume {:.4f} (normalised, reference 1.1) &middot; time: sensitivity {:.1f} s, search {:.1f} s, final {:.1f} s &middot; {}</p>)~",
      html_text(info.model_name), html_text(info.model_name),
      html_text(r.target.empty() ? "(none)" : r.target), html_text(r.policy),
      html_text(fmt::format("{}", fmt::join(r.objective_names, ", "))),
      html_text(r.space_description), quality.name, value_text(quality.value(r.fp32)),
      r.fp32.samples, r.evaluations.size(), r.evaluations_run, r.evaluations_reused, r.front.size(),
      r.hypervolume, r.seconds_sensitivity, r.seconds_search, r.seconds_final,
      html_text(r.stop_reason));
  for (const auto& warning : r.target_warnings)
    html += fmt::format(R"~(<p style="color:#a40">warning: {}</p>)~", html_text(warning));
  if (has_latency) html += scatter_svg(latency_chart);
  html += scatter_svg(size_chart);
  html +=
      fmt::format("<h2>Front</h2><table><tr><th>plan</th><th>{0} (subset)</th><th>{0} (final)</th>",
                  quality.name) +
      "<th>drop (pt)</th>"
      "<th>worst class drop (pt)</th><th>predicted latency (ms)</th><th>measured (ms)</th>"
      "<th>size (MB)</th><th>bits per weight</th><th>GBOPs</th></tr>";
  for (std::size_t k = 0; k < r.front.size(); ++k) {
    const auto& e = r.evaluations[r.front[k]];
    const PlanMetrics& m = e.final_metrics ? *e.final_metrics : e.metrics;
    html += fmt::format(
        "<tr><td class=l>{}</td><td>{}</td><td>{}</td><td>{:.2f}</td><td>{:.2f}</td>"
        "<td>{:.4f}</td><td>{}</td><td>{:.4f}</td><td>{:.3f}</td><td>{:.3g}</td></tr>",
        plan_file_name(k), value_text(quality.value(e.metrics)),
        e.final_metrics ? value_text(quality.value(*e.final_metrics)) : "&ndash;",
        100 * (r.fp32.top1 - m.top1), 100 * m.worst_class_drop, e.metrics.latency_ms,
        e.measured_latency_ms ? fmt::format("{:.4f} &plusmn; {:.4f}", *e.measured_latency_ms,
                                            e.measured_latency_iqr_ms.value_or(0) / 2)
                              : "<span class=muted>not this machine</span>",
        e.metrics.size_bytes / 1e6, e.metrics.bits_per_weight, e.metrics.gbops);
  }
  html += fmt::format(
              "</table><h2>Uniform baselines</h2><table><tr><th>plan</th><th>{0} "
              "(subset)</th><th>{0} (final)</th>",
              quality.name) +
          "<th>predicted latency (ms)</th><th>size (MB)</th><th>bits per weight</th>"
          "<th class=l>note</th></tr>";
  for (const auto& b : r.baselines)
    html += fmt::format(
        "<tr><td class=l>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.4f}</td><td>{:.3f}</td>"
        "<td class=l>{}</td></tr>",
        html_text(b.name), value_text(quality.value(b.metrics)),
        b.final_metrics ? value_text(quality.value(*b.final_metrics)) : "&ndash;",
        std::isfinite(b.metrics.latency_ms) ? fmt::format("{:.4f}", b.metrics.latency_ms)
                                            : "&ndash;",
        b.metrics.size_bytes / 1e6, b.metrics.bits_per_weight, html_text(b.unsupported));
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
