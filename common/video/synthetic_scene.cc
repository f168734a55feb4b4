#include "common/video/synthetic_scene.h"

#include <algorithm>
#include <cmath>
#include <string>

#include <opencv2/imgproc.hpp>

namespace sd {
namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr int kMaxObjects = 64;  // object ids must fit the 8-bit label image
constexpr uint8_t kOccluderLabel = 255;

// Scene layout in fractions of the frame height.
constexpr double kHorizon = 0.32;  // objects standing here would have size 0
constexpr double kNearestFoot = 1.0;
constexpr double kFarthestFoot = 0.45;

// std:: distributions differ between standard libraries; these hashes do not, so a seed
// gives the same scene everywhere.
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

enum Stream : uint64_t { kSlotStream = 1, kEpisodeStream, kBackgroundStream, kLightingStream };

uint64_t Key(uint64_t seed, Stream stream, uint64_t a = 0, uint64_t b = 0) {
  return Mix(Mix(Mix(seed ^ (stream * 0x632be59bd9b4e019ULL)) ^ a) ^ b);
}

class HashRng {
 public:
  explicit HashRng(uint64_t key) : state_(key) {}
  double Uniform(double lo, double hi) {
    state_ = Mix(state_);
    return lo + (hi - lo) * static_cast<double>(state_ >> 11) * 0x1.0p-53;
  }
  int Below(int n) {
    state_ = Mix(state_);
    return static_cast<int>(state_ % static_cast<uint64_t>(n));
  }
  template <typename T, size_t N>
  const T& Pick(const T (&items)[N]) {
    return items[Below(static_cast<int>(N))];
  }

 private:
  uint64_t state_;
};

double Lerp(double a, double b, double t) { return a + (b - a) * t; }

// ---------------------------------------------------------------------------------------
// Objects.

// BGR palettes; saturated or clearly darker/lighter than the background palettes.
const cv::Scalar kShirts[] = {{40, 40, 200},  {200, 80, 30},  {40, 160, 40},  {30, 200, 220},
                              {180, 40, 180}, {200, 200, 40}, {20, 120, 240}, {245, 245, 245}};
const cv::Scalar kPants[] = {{70, 40, 30}, {35, 35, 35}, {100, 150, 175}, {130, 60, 40}};
const cv::Scalar kSkins[] = {{120, 160, 220}, {80, 120, 180}, {55, 85, 135}, {160, 195, 235}};
const cv::Scalar kCars[] = {{40, 40, 210},   {190, 110, 30}, {235, 235, 235}, {25, 25, 25},
                            {175, 175, 175}, {30, 130, 30},  {40, 180, 230}};
const cv::Scalar kDiscs[] = {{0, 220, 255}, {255, 90, 0}, {0, 0, 255}, {255, 0, 255}};

// One object at one frame: where it stands and everything needed to draw it.
struct Placement {
  int64_t track_id = 0;
  int class_id = 0;
  double foot_y = 0;          // ground contact; deeper objects (larger y) are drawn later
  cv::Rect2d box;             // nominal extent the drawing stays within
  int direction = 1;          // +1 moving right, -1 moving left
  double phase = 0;           // walk cycle / bounce, radians
  cv::Scalar colors[3];
};

// Per-slot schedule: each slot replays "episodes" of fixed length, each with at most one
// object crossing the frame, so the object at any frame follows from the index alone.
struct Slot {
  int64_t period = 0;
  int64_t offset = 0;
};

Slot MakeSlot(const SyntheticSceneOptions& o, int slot) {
  HashRng rng(Key(o.seed, kSlotStream, static_cast<uint64_t>(slot)));
  Slot s;
  s.period = std::max<int64_t>(20, std::llround(o.fps * rng.Uniform(9.0, 16.0)));
  s.offset = rng.Below(static_cast<int>(s.period));
  return s;
}

// The object's nominal size at scale s (1 at the bottom edge, 0 at the horizon).
cv::Size2d ObjectSize(int class_id, double s, double frame_h) {
  switch (class_id) {
    case 0: return {0.18 * frame_h * s, 0.5 * frame_h * s};   // upright figure
    case 1: {
      const double w = 0.62 * frame_h * s;                     // car
      return {w, 0.42 * w};
    }
    default: return {0.2 * frame_h * s, 0.2 * frame_h * s};  // disc
  }
}

bool PlaceInEpisode(const SyntheticSceneOptions& o, int slot, int64_t episode, double t,
                    Placement* p) {
  HashRng rng(Key(o.seed, kEpisodeStream, static_cast<uint64_t>(slot),
                  static_cast<uint64_t>(episode)));
  const Slot s = MakeSlot(o, slot);
  if (rng.Uniform(0, 1) > o.activity) return false;  // some episodes stay empty
  p->class_id = rng.Below(o.num_classes);
  p->direction = rng.Below(2) ? 1 : -1;
  const double h = o.height;
  const double y0 = h * rng.Uniform(kFarthestFoot, kNearestFoot);
  const double y1 = std::clamp(y0 + h * rng.Uniform(-0.1, 0.1), h * kFarthestFoot, h * kNearestFoot);
  static const double kMinDuration[] = {0.75, 0.35, 0.5}, kMaxDuration[] = {1.0, 0.6, 0.85};
  const double duration =
      std::max(8.0, s.period * rng.Uniform(kMinDuration[p->class_id], kMaxDuration[p->class_id]));
  const double start = rng.Uniform(0, s.period - duration);
  const double progress = (t - start) / duration;
  if (progress < 0 || progress >= 1) return false;

  const double foot = Lerp(y0, y1, progress);
  auto scale_at = [&](double y) { return (y / h - kHorizon) / (1.0 - kHorizon); };
  const cv::Size2d size = ObjectSize(p->class_id, scale_at(foot), h);
  // Enter and leave fully outside the frame.
  const double w0 = ObjectSize(p->class_id, scale_at(y0), h).width;
  const double w1 = ObjectSize(p->class_id, scale_at(y1), h).width;
  double x_from = -w0 / 2 - 2, x_to = o.width + w1 / 2 + 2;
  if (p->direction < 0) std::swap(x_from, x_to);
  const double cx = Lerp(x_from, x_to, progress);

  const int cycles = 3 + rng.Below(6);
  p->phase = 2 * kPi * cycles * progress + rng.Uniform(0, 2 * kPi);
  double lift = 0;
  if (p->class_id == 2) lift = size.height * rng.Uniform(0.3, 1.0) * std::abs(std::sin(p->phase / 2));
  p->foot_y = foot;
  p->box = cv::Rect2d(cx - size.width / 2, foot - lift - size.height, size.width, size.height);
  p->track_id = episode * o.max_objects + slot;
  switch (p->class_id) {
    case 0: p->colors[0] = rng.Pick(kShirts); p->colors[1] = rng.Pick(kPants); p->colors[2] = rng.Pick(kSkins); break;
    case 1: p->colors[0] = rng.Pick(kCars); p->colors[1] = {90, 60, 50}; p->colors[2] = {20, 20, 20}; break;
    default: p->colors[0] = rng.Pick(kDiscs); p->colors[1] = {250, 250, 250}; p->colors[2] = p->colors[0]; break;
  }
  return true;
}

std::vector<Placement> PlaceObjects(const SyntheticSceneOptions& o, int64_t index) {
  std::vector<Placement> placements;
  for (int slot = 0; slot < o.max_objects; ++slot) {
    const Slot s = MakeSlot(o, slot);
    const int64_t local = index + s.offset;
    Placement p;
    if (PlaceInEpisode(o, slot, local / s.period, static_cast<double>(local % s.period), &p)) {
      placements.push_back(p);
    }
  }
  std::stable_sort(placements.begin(), placements.end(),
                   [](const Placement& a, const Placement& b) { return a.foot_y < b.foot_y; });
  return placements;
}

// An object drawn on its own small canvas, with a mask of its pixels, in frame coordinates
// offset by `origin`. Shapes use 3 fractional bits so that slow motion still moves pixels.
class Sprite {
 public:
  explicit Sprite(const cv::Rect2d& box)
      : origin_(static_cast<int>(std::floor(box.x)), static_cast<int>(std::floor(box.y))) {
    const int w = std::max(1, static_cast<int>(std::ceil(box.x + box.width)) - origin_.x);
    const int h = std::max(1, static_cast<int>(std::ceil(box.y + box.height)) - origin_.y);
    bgr_ = cv::Mat(h, w, CV_8UC3, cv::Scalar::all(0));
    mask_ = cv::Mat(h, w, CV_8UC1, cv::Scalar(0));
  }

  void Polygon(std::initializer_list<cv::Point2d> points, const cv::Scalar& color) {
    cv::Point fixed[8];
    int n = 0;
    for (const cv::Point2d& p : points) {
      fixed[n++] = cv::Point(static_cast<int>(std::lround((p.x - origin_.x) * kOne)),
                             static_cast<int>(std::lround((p.y - origin_.y) * kOne)));
    }
    cv::fillConvexPoly(bgr_, fixed, n, color, cv::LINE_8, kShift);
    cv::fillConvexPoly(mask_, fixed, n, cv::Scalar(255), cv::LINE_8, kShift);
  }
  void Rect(double x1, double y1, double x2, double y2, const cv::Scalar& color) {
    Polygon({{x1, y1}, {x2, y1}, {x2, y2}, {x1, y2}}, color);
  }
  void Ellipse(cv::Point2d center, double rx, double ry, const cv::Scalar& color) {
    const cv::Point c(static_cast<int>(std::lround((center.x - origin_.x) * kOne)),
                      static_cast<int>(std::lround((center.y - origin_.y) * kOne)));
    const cv::Size axes(std::max(0, static_cast<int>(std::lround(rx * kOne))),
                        std::max(0, static_cast<int>(std::lround(ry * kOne))));
    cv::ellipse(bgr_, c, axes, 0, 0, 360, color, cv::FILLED, cv::LINE_8, kShift);
    cv::ellipse(mask_, c, axes, 0, 0, 360, cv::Scalar(255), cv::FILLED, cv::LINE_8, kShift);
  }

  cv::Point origin() const { return origin_; }
  const cv::Mat& bgr() const { return bgr_; }
  const cv::Mat& mask() const { return mask_; }

 private:
  static constexpr int kShift = 3;
  static constexpr double kOne = 1 << kShift;
  cv::Point origin_;
  cv::Mat bgr_, mask_;
};

void DrawFigure(const Placement& p, Sprite* s) {
  const cv::Rect2d& b = p.box;
  const double cx = b.x + b.width / 2, w = b.width, h = b.height;
  const double hip = b.y + 0.56 * h;
  for (int side : {-1, 1}) {  // legs swing in opposite phase
    const double swing = 0.2 * w * std::sin(p.phase) * side;
    const double top = cx + side * 0.16 * w, bottom = top + swing;
    s->Polygon({{top - 0.1 * w, hip}, {top + 0.1 * w, hip}, {bottom + 0.1 * w, b.y + h},
                {bottom - 0.1 * w, b.y + h}},
               p.colors[1]);
  }
  s->Polygon({{cx - 0.5 * w, b.y + 0.19 * h}, {cx + 0.5 * w, b.y + 0.19 * h},
              {cx + 0.38 * w, hip + 0.02 * h}, {cx - 0.38 * w, hip + 0.02 * h}},
             p.colors[0]);
  s->Ellipse({cx + 0.04 * w * p.direction, b.y + 0.1 * h}, 0.26 * w, 0.1 * h, p.colors[2]);
}

void DrawCar(const Placement& p, Sprite* s) {
  const cv::Rect2d& b = p.box;
  const double x1 = b.x, x2 = b.x + b.width, w = b.width, h = b.height, y2 = b.y + h;
  const double d = p.direction;
  const double mid = b.x + w / 2 + 0.05 * w * d;  // the cabin leans to the rear
  s->Polygon({{mid - 0.3 * w, b.y}, {mid + 0.2 * w, b.y}, {mid + 0.36 * w, b.y + 0.42 * h},
              {mid - 0.4 * w, b.y + 0.42 * h}},
             p.colors[0]);
  s->Polygon({{mid - 0.26 * w, b.y + 0.08 * h}, {mid + 0.17 * w, b.y + 0.08 * h},
              {mid + 0.29 * w, b.y + 0.38 * h}, {mid - 0.33 * w, b.y + 0.38 * h}},
             p.colors[1]);
  s->Rect(x1, b.y + 0.4 * h, x2, y2 - 0.14 * h, p.colors[0]);
  const double front = d > 0 ? x2 - 0.06 * w : x1;
  s->Rect(front, b.y + 0.48 * h, front + 0.06 * w, b.y + 0.58 * h, cv::Scalar(200, 245, 255));
  for (double wx : {x1 + 0.22 * w, x2 - 0.22 * w}) {
    s->Ellipse({wx, y2 - 0.14 * h}, 0.14 * h, 0.14 * h, p.colors[2]);
  }
}

void DrawDisc(const Placement& p, Sprite* s) {
  const cv::Rect2d& b = p.box;
  const cv::Point2d c(b.x + b.width / 2, b.y + b.height / 2);
  const double r = b.width / 2;
  s->Ellipse(c, r, r, p.colors[0]);
  s->Ellipse(c, 0.62 * r, 0.62 * r, p.colors[1]);
  s->Ellipse(c, 0.3 * r, 0.3 * r, p.colors[2]);
}

Sprite DrawObject(const Placement& p) {
  Sprite sprite(p.box);
  switch (p.class_id) {
    case 0: DrawFigure(p, &sprite); break;
    case 1: DrawCar(p, &sprite); break;
    default: DrawDisc(p, &sprite); break;
  }
  return sprite;
}

Box ToBox(const cv::Rect& r) {
  return Box{static_cast<float>(r.x), static_cast<float>(r.y), static_cast<float>(r.x + r.width),
             static_cast<float>(r.y + r.height)};
}

// ---------------------------------------------------------------------------------------
// Background and lighting.

struct Palette {
  cv::Scalar sky_top, sky_horizon, building_dark, building_light, window, sidewalk, ground;
};
// Muted colors, unlike the objects'. The second is what the scene turns into at the drift.
const Palette kPalettes[2] = {
    {{225, 190, 140}, {225, 215, 200}, {95, 100, 110}, {165, 170, 175}, {70, 65, 60},
     {150, 155, 158}, {100, 104, 104}},
    {{110, 60, 55}, {150, 115, 125}, {60, 55, 70}, {115, 105, 120}, {90, 170, 210},
     {120, 125, 110}, {70, 88, 72}},
};

cv::Scalar LerpColor(const cv::Scalar& a, const cv::Scalar& b, double t) {
  return a * (1 - t) + b * t;
}

void DrawBuildings(const Palette& pal, int w, int horizon, HashRng* rng, cv::Mat* img) {
  for (int x = -rng->Below(40); x < w;) {
    const int bw = static_cast<int>(w * rng->Uniform(0.08, 0.22));
    const int top = static_cast<int>(horizon * rng->Uniform(0.15, 0.75));
    const cv::Scalar wall = LerpColor(pal.building_dark, pal.building_light, rng->Uniform(0, 1));
    cv::rectangle(*img, cv::Rect(x, top, bw, horizon - top), wall, cv::FILLED);
    const int step = 6 + rng->Below(5);
    for (int wy = top + 4; wy + 4 < horizon - 2; wy += step) {
      for (int wx = x + 3; wx + 3 < x + bw - 2; wx += step) {
        if (rng->Uniform(0, 1) < 0.8) cv::rectangle(*img, cv::Rect(wx, wy, 3, 4), pal.window, cv::FILLED);
      }
    }
    x += bw + rng->Below(12);
  }
}

// Noise of a given feature size, upsampled smoothly, in [-amplitude, amplitude].
cv::Mat SmoothNoise(cv::Size size, int cell, double amplitude, cv::RNG* rng) {
  cv::Mat coarse(std::max(2, size.height / cell + 2), std::max(2, size.width / cell + 2), CV_32F);
  rng->fill(coarse, cv::RNG::UNIFORM, -amplitude, amplitude);
  cv::Mat fine;
  cv::resize(coarse, fine, size, 0, 0, cv::INTER_CUBIC);
  return fine;
}

cv::Mat MakeBackground(const SyntheticSceneOptions& o, int variant) {
  const Palette& pal = kPalettes[variant];
  HashRng rng(Key(o.seed, kBackgroundStream, static_cast<uint64_t>(variant)));
  const int w = o.width, h = o.height;
  const int horizon = static_cast<int>(h * kHorizon);
  cv::Mat img(h, w, CV_8UC3);
  for (int y = 0; y < horizon; ++y) {
    img.row(y).setTo(LerpColor(pal.sky_top, pal.sky_horizon, static_cast<double>(y) / horizon));
  }
  DrawBuildings(pal, w, horizon, &rng, &img);
  const int curb = horizon + static_cast<int>(0.07 * h);
  img.rowRange(horizon, curb).setTo(pal.sidewalk);
  img.rowRange(curb, h).setTo(pal.ground);
  for (int x = -rng.Below(60); x < w; x += 60) {  // lane markings, smaller with distance
    const int y = curb + static_cast<int>(0.55 * (h - curb));
    cv::rectangle(img, cv::Rect(x, y, 30, 3), cv::Scalar(200, 205, 210), cv::FILLED);
  }

  // Texture: blotches, grain and fine noise, the same on all channels.
  cv::RNG cv_rng(Key(o.seed, kBackgroundStream, static_cast<uint64_t>(variant), 1));
  cv::Mat noise = SmoothNoise(img.size(), 48, 14, &cv_rng) + SmoothNoise(img.size(), 8, 8, &cv_rng);
  cv::Mat grain(img.size(), CV_32F);
  cv_rng.fill(grain, cv::RNG::UNIFORM, -6, 6);
  noise += grain;
  cv::Mat noise3, img_f;
  cv::merge(std::vector<cv::Mat>{noise, noise, noise}, noise3);
  img.convertTo(img_f, CV_32FC3);
  img_f += noise3;
  img_f.convertTo(img, CV_8UC3);  // saturates
  return img;
}

struct Lighting {
  double gain = 1;  // contrast around mid-grey
  double bias = 0;  // brightness
};

Lighting LightingAt(const SyntheticSceneOptions& o, int64_t index) {
  HashRng rng(Key(o.seed, kLightingStream));
  const double phase_gain = rng.Uniform(0, 2 * kPi), phase_bias = rng.Uniform(0, 2 * kPi);
  const double seconds = index / o.fps;
  Lighting l;
  // Periods of tens of seconds: slow next to any sampling interval of interest.
  l.gain = 1 + o.lighting_drift * std::sin(2 * kPi * seconds / 47.0 + phase_gain);
  l.bias = 127 * o.lighting_drift * std::sin(2 * kPi * seconds / 29.0 + phase_bias);
  if (o.drift_at_frame >= 0 && index >= o.drift_at_frame) {
    l.gain *= rng.Uniform(0.65, 0.8);
    l.bias += rng.Uniform(-30, 30);
  }
  return l;
}

}  // namespace

Status SyntheticSceneOptions::Validate() const {
  const SyntheticSceneOptions& o = *this;
  auto invalid = [](const std::string& what) {
    return Status::InvalidArgument("synthetic scene: " + what);
  };
  if (o.width < 32 || o.height < 32) {
    return invalid("frame size must be at least 32x32, got " + std::to_string(o.width) + "x" +
                   std::to_string(o.height));
  }
  if (!(o.fps > 0)) return invalid("fps must be positive, got " + std::to_string(o.fps));
  if (o.num_classes < 1 || o.num_classes > 3) {
    return invalid("num_classes must be in 1..3, got " + std::to_string(o.num_classes));
  }
  if (o.max_objects < 0 || o.max_objects > kMaxObjects) {
    return invalid("max_objects must be in 0.." + std::to_string(kMaxObjects) + ", got " +
                   std::to_string(o.max_objects));
  }
  if (!(o.activity >= 0 && o.activity <= 1)) {
    return invalid("activity must be in [0, 1], got " + std::to_string(o.activity));
  }
  if (o.lighting_drift < 0 || o.lighting_drift > 0.5) {
    return invalid("lighting_drift must be in [0, 0.5], got " + std::to_string(o.lighting_drift));
  }
  if (o.min_visible_fraction < 0 || o.min_visible_fraction > 1) {
    return invalid("min_visible_fraction must be in [0, 1]");
  }
  return Status::Ok();
}

StatusOr<SyntheticScene> SyntheticScene::Create(const SyntheticSceneOptions& options) {
  SD_RETURN_IF_ERROR(options.Validate());
  SyntheticScene scene(options);
  for (int variant = 0; variant < 2; ++variant) {
    try {
      scene.background_[variant] = MakeBackground(options, variant);
    } catch (const cv::Exception& e) {
      return Status::Internal("synthetic scene: building the background: " + e.err);
    }
  }
  if (options.occluder) {
    // A pillar wide enough to hide a near figure entirely, to the bottom edge.
    const int w = options.width, h = options.height;
    scene.occluder_rect_ = cv::Rect(static_cast<int>(0.6 * w), static_cast<int>(0.08 * h),
                                    std::max(4, static_cast<int>(0.11 * w)), h - static_cast<int>(0.08 * h));
    scene.occluder_bgr_.create(scene.occluder_rect_.size(), CV_8UC3);
    const int pw = scene.occluder_rect_.width;
    for (int x = 0; x < pw; ++x) {  // rounded shading across the pillar
      const double t = std::sin(kPi * (x + 0.5) / pw);
      scene.occluder_bgr_.col(x).setTo(cv::Scalar(70, 95, 110) + cv::Scalar(60, 60, 55) * t);
    }
  }
  return scene;
}

SyntheticFrame SyntheticScene::Render(int64_t index) const {
  const SyntheticSceneOptions& o = options_;
  const bool drifted = o.drift_at_frame >= 0 && index >= o.drift_at_frame;
  cv::Mat canvas = background_[drifted ? 1 : 0].clone();
  cv::Mat labels(canvas.size(), CV_8UC1, cv::Scalar(0));
  const cv::Rect frame_rect(0, 0, o.width, o.height);

  // Far to near, so that nearer objects cover farther ones.
  const std::vector<Placement> placements = PlaceObjects(o, index);
  std::vector<Sprite> sprites;
  sprites.reserve(placements.size());
  for (size_t i = 0; i < placements.size(); ++i) {
    sprites.push_back(DrawObject(placements[i]));
    const Sprite& s = sprites.back();
    const cv::Rect on_frame = cv::Rect(s.origin(), s.mask().size()) & frame_rect;
    if (on_frame.empty()) continue;
    const cv::Rect local = on_frame - s.origin();
    s.bgr()(local).copyTo(canvas(on_frame), s.mask()(local));
    labels(on_frame).setTo(cv::Scalar(static_cast<double>(i + 1)), s.mask()(local));
  }
  if (!occluder_rect_.empty()) {
    occluder_bgr_.copyTo(canvas(occluder_rect_));
    labels(occluder_rect_).setTo(cv::Scalar(kOccluderLabel));
  }

  SyntheticFrame frame;
  for (size_t i = 0; i < placements.size(); ++i) {
    const Sprite& s = sprites[i];
    const cv::Rect sprite_rect(s.origin(), s.mask().size());
    const cv::Rect on_frame = sprite_rect & frame_rect;
    if (on_frame.empty()) continue;
    const int total = cv::countNonZero(s.mask());
    if (total == 0) continue;  // too small to cover a pixel
    SyntheticObject object;
    object.track_id = placements[i].track_id;
    object.class_id = placements[i].class_id;
    object.full_box = ToBox(cv::boundingRect(s.mask()) + s.origin());
    const cv::Mat visible = labels(on_frame) == static_cast<double>(i + 1);
    const int shown = cv::countNonZero(visible);
    if (shown > 0) object.visible_box = ToBox(cv::boundingRect(visible) + on_frame.tl());
    object.visible_fraction = static_cast<float>(shown) / static_cast<float>(total);
    object.in_ground_truth = shown > 0 && object.visible_fraction >= o.min_visible_fraction;
    if (object.in_ground_truth) {
      frame.ground_truth.push_back(Detection{object.visible_box, 1.0f, object.class_id});
    }
    frame.objects.push_back(object);
  }

  const Lighting light = LightingAt(o, index);
  canvas.convertTo(frame.bgr, CV_8UC3, light.gain, 128 * (1 - light.gain) + light.bias);
  return frame;
}

}  // namespace sd
