//! A small ray tracer for CLEVR-like scenes: matte-plastic spheres, cubes and cylinders on a grey floor, one key
//! light from a fixed direction (diffuse + Blinn–Phong specular), a fill light, soft shadows and contact occlusion
//! on the floor, a perspective camera looking down at about 40°. Edges are anti-aliased adaptively: pixels whose
//! corners see different surfaces are supersampled 4×4, the rest take one sample (the floor and shading are smooth).
//!
//! World: x to the right, y away from the camera, z up; the floor is z = 0 and every object stands on it.

use std::sync::OnceLock;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct V3 {
    pub x: f32,
    pub y: f32,
    pub z: f32,
}

const fn v3(x: f32, y: f32, z: f32) -> V3 {
    V3 { x, y, z }
}

impl V3 {
    fn dot(self, o: V3) -> f32 {
        self.x * o.x + self.y * o.y + self.z * o.z
    }
    fn cross(self, o: V3) -> V3 {
        v3(
            self.y * o.z - self.z * o.y,
            self.z * o.x - self.x * o.z,
            self.x * o.y - self.y * o.x,
        )
    }
    fn len(self) -> f32 {
        self.dot(self).sqrt()
    }
    fn normalized(self) -> V3 {
        self * (1.0 / self.len())
    }
}

impl std::ops::Add for V3 {
    type Output = V3;
    fn add(self, o: V3) -> V3 {
        v3(self.x + o.x, self.y + o.y, self.z + o.z)
    }
}
impl std::ops::Sub for V3 {
    type Output = V3;
    fn sub(self, o: V3) -> V3 {
        v3(self.x - o.x, self.y - o.y, self.z - o.z)
    }
}
impl std::ops::Mul<f32> for V3 {
    type Output = V3;
    fn mul(self, s: f32) -> V3 {
        v3(self.x * s, self.y * s, self.z * s)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Sphere,
    Cube,
    Cylinder,
}

impl Shape {
    pub const ALL: [Shape; 3] = [Shape::Sphere, Shape::Cube, Shape::Cylinder];
    pub const NAMES: [&'static str; 3] = ["sphere", "cube", "cylinder"];
}

/// One object: `x`, `y` the centre of its footprint on the floor (world units), `size` its nominal radius, `hue` in
/// [0, 1) (colour at fixed saturation and value), `yaw` the rotation of a cube about the vertical.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Object {
    pub shape: Shape,
    pub x: f32,
    pub y: f32,
    pub size: f32,
    pub hue: f32,
    pub yaw: f32,
}

// Scene constants (world units; CLEVR's objects have radius 0.35–0.7 on a floor seen over about ±3 units).
const CAM_TARGET: V3 = v3(0.0, 0.4, 0.0);
const CAM_DIST: f32 = 11.5;
const CAM_ELEVATION_DEG: f32 = 40.0;
const CAM_FOV_DEG: f32 = 28.0;
/// Direction towards the key light (from the upper left, slightly behind the camera): shadows fall right and back.
const KEY_DIR: V3 = v3(-0.55, -0.35, 0.76);
/// Direction towards the fill light (right front, weaker, casts no shadow).
const FILL_DIR: V3 = v3(0.7, -0.5, 0.5);
const FLOOR_ALBEDO: f32 = 0.42;
const CUBE_HALF: f32 = 0.8; // × size
const CYL_RADIUS: f32 = 0.9; // × size
const CYL_HEIGHT: f32 = 1.8; // × size

/// Albedo in linear RGB for a hue (HSV with saturation 0.72 and value 0.78, then sRGB → linear).
pub fn hue_albedo(hue: f32) -> V3 {
    let (s, v) = (0.72f32, 0.78f32);
    let h = hue.rem_euclid(1.0) * 6.0;
    let c = v * s;
    let x = c * (1.0 - ((h % 2.0) - 1.0).abs());
    let (r, g, b) = match h as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = v - c;
    let lin = |u: f32| (u + m).powf(2.2);
    v3(lin(r), lin(g), lin(b))
}

struct Camera {
    eye: V3,
    fwd: V3,
    right: V3,
    up: V3,
    tan_half: f32,
}

impl Camera {
    fn new() -> Self {
        let el = CAM_ELEVATION_DEG.to_radians();
        let eye = CAM_TARGET + v3(0.0, -el.cos(), el.sin()) * CAM_DIST;
        let fwd = (CAM_TARGET - eye).normalized();
        let right = fwd.cross(v3(0.0, 0.0, 1.0)).normalized();
        let up = right.cross(fwd);
        Camera {
            eye,
            fwd,
            right,
            up,
            tan_half: (CAM_FOV_DEG.to_radians() / 2.0).tan(),
        }
    }
    /// Ray direction through image point (px, py) in pixels of an image `res` wide (y down).
    fn ray(&self, px: f32, py: f32, res: f32) -> V3 {
        let u = (px / res * 2.0 - 1.0) * self.tan_half;
        let v = (1.0 - py / res * 2.0) * self.tan_half;
        (self.fwd + self.right * u + self.up * v).normalized()
    }
    /// Pixel coordinates of a world point.
    fn project(&self, p: V3, res: f32) -> (f32, f32) {
        let d = p - self.eye;
        let z = d.dot(self.fwd);
        let u = d.dot(self.right) / (z * self.tan_half);
        let v = d.dot(self.up) / (z * self.tan_half);
        ((u + 1.0) * 0.5 * res, (1.0 - v) * 0.5 * res)
    }
}

/// Ratio of the camera depth of the floor point (0, y, 0) to that of the origin: a horizontal offset scaled by it
/// projects to the same image column at every depth.
pub fn depth_scale(y: f32) -> f32 {
    let cam = camera();
    (v3(0.0, y, 0.0) - cam.eye).dot(cam.fwd) / (v3(0.0, 0.0, 0.0) - cam.eye).dot(cam.fwd)
}

fn camera() -> &'static Camera {
    static CAM: OnceLock<Camera> = OnceLock::new();
    CAM.get_or_init(Camera::new)
}

/// Linear [0, 1] → sRGB-like uint8 (gamma 1/2.2), as a table: one lookup per pixel instead of three `powf`.
fn tone_lut() -> &'static [u8; 4097] {
    static LUT: OnceLock<[u8; 4097]> = OnceLock::new();
    LUT.get_or_init(|| {
        let mut t = [0u8; 4097];
        for (i, v) in t.iter_mut().enumerate() {
            *v = ((i as f32 / 4096.0).powf(1.0 / 2.2) * 255.0).round() as u8;
        }
        t
    })
}

fn tone(v: f32) -> u8 {
    tone_lut()[(v.clamp(0.0, 1.0) * 4096.0 + 0.5) as usize]
}

fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    let t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// Per-object data derived once per image.
struct Prepared {
    obj: Object,
    albedo: V3,
    /// World-space centre of the object's bounding box and a bounding radius (for culling shadow rays).
    centre: V3,
    bound: f32,
    /// Cube: cos/sin of yaw, half side. Cylinder / sphere: radius. Height of the object.
    cos: f32,
    sin: f32,
    half: f32,
    height: f32,
    /// Shadow on the floor: the footprint's shadow is swept from `base` along `sweep` (the key light's projection
    /// of the top); `hull` is the convex shadow polygon of a cube.
    sweep: (f32, f32),
    hull: Vec<(f32, f32)>,
    /// Screen bounding box in pixels (x0, y0, x1, y1).
    screen: (f32, f32, f32, f32),
}

struct Hit {
    t: f32,
    n: V3,
    id: u32,
}

impl Prepared {
    fn new(obj: Object, res: f32) -> Self {
        let s = obj.size;
        let (half, height) = match obj.shape {
            Shape::Sphere => (s, 2.0 * s),
            Shape::Cube => (CUBE_HALF * s, 2.0 * CUBE_HALF * s),
            Shape::Cylinder => (CYL_RADIUS * s, CYL_HEIGHT * s),
        };
        let key = KEY_DIR.normalized();
        let sweep = (-key.x / key.z * height, -key.y / key.z * height);
        let (cos, sin) = (obj.yaw.cos(), obj.yaw.sin());
        let mut hull = Vec::new();
        if obj.shape == Shape::Cube {
            let mut pts = Vec::new();
            for (a, b) in [(-1.0, -1.0), (1.0, -1.0), (1.0, 1.0), (-1.0, 1.0)] {
                let (lx, ly) = (a * half, b * half);
                let (wx, wy) = (obj.x + lx * cos - ly * sin, obj.y + lx * sin + ly * cos);
                pts.push((wx, wy));
                pts.push((wx + sweep.0, wy + sweep.1));
            }
            hull = convex_hull(pts);
        }
        // Screen box from the corners of a world box around the object (cubes: their rotated half-diagonal).
        let rad = if obj.shape == Shape::Cube {
            half * std::f32::consts::SQRT_2
        } else {
            half
        };
        let cam = camera();
        let (mut x0, mut y0, mut x1, mut y1) = (f32::MAX, f32::MAX, f32::MIN, f32::MIN);
        for dx in [-rad, rad] {
            for dy in [-rad, rad] {
                for z in [0.0, height] {
                    let (px, py) = cam.project(v3(obj.x + dx, obj.y + dy, z), res);
                    x0 = x0.min(px);
                    y0 = y0.min(py);
                    x1 = x1.max(px);
                    y1 = y1.max(py);
                }
            }
        }
        Prepared {
            obj,
            albedo: hue_albedo(obj.hue),
            centre: v3(obj.x, obj.y, height / 2.0),
            bound: (rad * rad + height * height / 4.0).sqrt(),
            cos,
            sin,
            half,
            height,
            sweep,
            hull,
            screen: (x0 - 1.0, y0 - 1.0, x1 + 1.0, y1 + 1.0),
        }
    }

    fn intersect(&self, o: V3, d: V3, tmax: f32) -> Option<Hit> {
        match self.obj.shape {
            Shape::Sphere => {
                let c = v3(self.obj.x, self.obj.y, self.half);
                let oc = o - c;
                let b = oc.dot(d);
                let cc = oc.dot(oc) - self.half * self.half;
                let disc = b * b - cc;
                if disc < 0.0 {
                    return None;
                }
                let t = -b - disc.sqrt();
                if t <= 1e-4 || t >= tmax {
                    return None;
                }
                let p = o + d * t;
                Some(Hit {
                    t,
                    n: (p - c) * (1.0 / self.half),
                    id: 1,
                })
            }
            Shape::Cylinder => {
                let (ox, oy) = (o.x - self.obj.x, o.y - self.obj.y);
                let r = self.half;
                let mut best: Option<Hit> = None;
                let a = d.x * d.x + d.y * d.y;
                if a > 1e-12 {
                    let b = ox * d.x + oy * d.y;
                    let c = ox * ox + oy * oy - r * r;
                    let disc = b * b - a * c;
                    if disc >= 0.0 {
                        let t = (-b - disc.sqrt()) / a;
                        let z = o.z + d.z * t;
                        if t > 1e-4 && t < tmax && (0.0..=self.height).contains(&z) {
                            let (px, py) = (ox + d.x * t, oy + d.y * t);
                            best = Some(Hit {
                                t,
                                n: v3(px / r, py / r, 0.0),
                                id: 1,
                            });
                        }
                    }
                }
                if d.z.abs() > 1e-12 {
                    let t = (self.height - o.z) / d.z;
                    let (px, py) = (ox + d.x * t, oy + d.y * t);
                    if t > 1e-4
                        && t < best.as_ref().map_or(tmax, |h| h.t)
                        && px * px + py * py <= r * r
                    {
                        best = Some(Hit {
                            t,
                            n: v3(0.0, 0.0, 1.0),
                            id: 2,
                        });
                    }
                }
                best
            }
            Shape::Cube => {
                // Into the cube's frame (rotation by −yaw about its vertical axis), then slabs.
                let (ox, oy) = (o.x - self.obj.x, o.y - self.obj.y);
                let lo = v3(
                    ox * self.cos + oy * self.sin,
                    -ox * self.sin + oy * self.cos,
                    o.z - self.half,
                );
                let ld = v3(
                    d.x * self.cos + d.y * self.sin,
                    -d.x * self.sin + d.y * self.cos,
                    d.z,
                );
                let h = self.half;
                let (mut tn, mut tf) = (f32::MIN, f32::MAX);
                let mut axis = 0usize;
                let mut sign = 1.0f32;
                for (k, (oo, dd)) in [(lo.x, ld.x), (lo.y, ld.y), (lo.z, ld.z)]
                    .into_iter()
                    .enumerate()
                {
                    if dd.abs() < 1e-12 {
                        if oo.abs() > h {
                            return None;
                        }
                        continue;
                    }
                    let inv = 1.0 / dd;
                    let (mut t0, mut t1) = ((-h - oo) * inv, (h - oo) * inv);
                    let mut s = -1.0;
                    if t0 > t1 {
                        std::mem::swap(&mut t0, &mut t1);
                        s = 1.0;
                    }
                    if t0 > tn {
                        tn = t0;
                        axis = k;
                        sign = s;
                    }
                    tf = tf.min(t1);
                }
                if tn > tf || tn <= 1e-4 || tn >= tmax {
                    return None;
                }
                let ln = match axis {
                    0 => v3(sign, 0.0, 0.0),
                    1 => v3(0.0, sign, 0.0),
                    _ => v3(0.0, 0.0, sign),
                };
                let n = v3(
                    ln.x * self.cos - ln.y * self.sin,
                    ln.x * self.sin + ln.y * self.cos,
                    ln.z,
                );
                Some(Hit {
                    t: tn,
                    n,
                    id: 1 + axis as u32 * 2 + (sign > 0.0) as u32,
                })
            }
        }
    }

    /// Fraction of key light that reaches the floor point (px, py) past this object (soft penumbra that widens
    /// with the height of the occluding part, like an area light).
    fn floor_light(&self, px: f32, py: f32) -> f32 {
        let (ax, ay) = (self.obj.x, self.obj.y);
        let (sx, sy) = self.sweep;
        // Cheap cull: distance to the swept segment's bounding circle.
        let (mx, my) = (ax + sx * 0.5, ay + sy * 0.5);
        let reach = (sx * sx + sy * sy).sqrt() * 0.5 + self.half * 1.5 + 0.6;
        if (px - mx).powi(2) + (py - my).powi(2) > reach * reach {
            return 1.0;
        }
        let seg2 = sx * sx + sy * sy;
        let tpar = (((px - ax) * sx + (py - ay) * sy) / seg2).clamp(0.0, 1.0);
        let sd = match self.obj.shape {
            Shape::Sphere => {
                // The sphere's shadow is the ellipse swept by its horizontal great circle: distance from the
                // light ray through p to the centre, minus the radius, measured in the floor plane.
                let key = KEY_DIR.normalized();
                let c = v3(ax, ay, self.half);
                let v = c - v3(px, py, 0.0);
                let t = v.dot(key);
                if t <= 0.0 {
                    return 1.0;
                }
                ((v - key * t).len() - self.half) / key.z
            }
            Shape::Cylinder => {
                let (qx, qy) = (ax + sx * tpar, ay + sy * tpar);
                ((px - qx).powi(2) + (py - qy).powi(2)).sqrt() - self.half
            }
            Shape::Cube => polygon_sdf(&self.hull, px, py),
        };
        let height = match self.obj.shape {
            Shape::Sphere => self.half * (1.0 + tpar),
            _ => self.height * tpar,
        };
        let w = 0.04 + 0.09 * height;
        1.0 - (1.0 - smoothstep(-w, w, sd)) * 0.8
    }

    /// Ambient occlusion of the floor near the object's foot.
    fn floor_ao(&self, px: f32, py: f32) -> f32 {
        let (dx, dy) = (px - self.obj.x, py - self.obj.y);
        // Beyond 3 radii the occlusion term is below 0.2 % (less than a grey level): skip the exp.
        if dx * dx + dy * dy > 9.0 * self.half * self.half {
            return 1.0;
        }
        let d = match self.obj.shape {
            Shape::Cube => {
                let lx = (dx * self.cos + dy * self.sin).abs() - self.half;
                let ly = (-dx * self.sin + dy * self.cos).abs() - self.half;
                (lx.max(0.0).powi(2) + ly.max(0.0).powi(2)).sqrt()
            }
            Shape::Cylinder => ((dx * dx + dy * dy).sqrt() - self.half).max(0.0),
            Shape::Sphere => ((dx * dx + dy * dy).sqrt() - 0.5 * self.half).max(0.0),
        };
        1.0 - 0.55 * (-d / (0.3 * self.half)).exp()
    }
}

/// Signed distance to a convex polygon given counter-clockwise (negative inside).
fn polygon_sdf(poly: &[(f32, f32)], px: f32, py: f32) -> f32 {
    let mut best = f32::MAX;
    let mut inside = true;
    for i in 0..poly.len() {
        let (ax, ay) = poly[i];
        let (bx, by) = poly[(i + 1) % poly.len()];
        let (ex, ey) = (bx - ax, by - ay);
        let (wx, wy) = (px - ax, py - ay);
        let t = ((wx * ex + wy * ey) / (ex * ex + ey * ey)).clamp(0.0, 1.0);
        let (dx, dy) = (wx - ex * t, wy - ey * t);
        best = best.min(dx * dx + dy * dy);
        if ex * wy - ey * wx < 0.0 {
            inside = false;
        }
    }
    if inside {
        -best.sqrt()
    } else {
        best.sqrt()
    }
}

/// Convex hull (Andrew's monotone chain), counter-clockwise.
fn convex_hull(mut pts: Vec<(f32, f32)>) -> Vec<(f32, f32)> {
    pts.sort_by(|a, b| a.partial_cmp(b).expect("finite points"));
    let cross = |o: (f32, f32), a: (f32, f32), b: (f32, f32)| {
        (a.0 - o.0) * (b.1 - o.1) - (a.1 - o.1) * (b.0 - o.0)
    };
    let mut lower: Vec<(f32, f32)> = Vec::new();
    for &p in &pts {
        while lower.len() >= 2 && cross(lower[lower.len() - 2], lower[lower.len() - 1], p) <= 0.0 {
            lower.pop();
        }
        lower.push(p);
    }
    let mut upper: Vec<(f32, f32)> = Vec::new();
    for &p in pts.iter().rev() {
        while upper.len() >= 2 && cross(upper[upper.len() - 2], upper[upper.len() - 1], p) <= 0.0 {
            upper.pop();
        }
        upper.push(p);
    }
    lower.pop();
    upper.pop();
    lower.extend(upper);
    lower
}

/// A broad falloff of the floor's light away from the lit centre, like CLEVR's lamps.
fn floor_falloff(x: f32, y: f32) -> f32 {
    let r2 = (x + 0.5).powi(2) * 0.025 + (y - 0.6).powi(2) * 0.035;
    1.0 / (1.0 + r2)
}

/// The floor point seen through every pixel centre and its falloff: the same for every image of a resolution.
struct FloorMap {
    x: Vec<f32>,
    y: Vec<f32>,
    falloff: Vec<f32>,
}

fn floor_map(res: usize) -> std::sync::Arc<FloorMap> {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    static MAPS: OnceLock<Mutex<HashMap<usize, Arc<FloorMap>>>> = OnceLock::new();
    let maps = MAPS.get_or_init(Default::default);
    if let Some(m) = maps.lock().expect("floor map lock").get(&res) {
        return m.clone();
    }
    let cam = camera();
    let n = res * res;
    let mut m = FloorMap {
        x: Vec::with_capacity(n),
        y: Vec::with_capacity(n),
        falloff: Vec::with_capacity(n),
    };
    for py in 0..res {
        for px in 0..res {
            let d = cam.ray(px as f32 + 0.5, py as f32 + 0.5, res as f32);
            let p = cam.eye + d * (-cam.eye.z / d.z);
            m.x.push(p.x);
            m.y.push(p.y);
            m.falloff.push(floor_falloff(p.x, p.y));
        }
    }
    let m = Arc::new(m);
    maps.lock().expect("floor map lock").insert(res, m.clone());
    m
}

struct Scene {
    objs: Vec<Prepared>,
    key: V3,
    fill: V3,
    res: f32,
}

const FLOOR_ID: u32 = 0;

impl Scene {
    /// Nearest object hit: (object index, hit).
    fn trace(&self, o: V3, d: V3) -> Option<(usize, Hit)> {
        let mut best: Option<(usize, Hit)> = None;
        for (i, ob) in self.objs.iter().enumerate() {
            let tmax = best.as_ref().map_or(f32::MAX, |b| b.1.t);
            if let Some(h) = ob.intersect(o, d, tmax) {
                best = Some((i, h));
            }
        }
        best
    }

    /// Surface id seen through image point (px, py): 0 for the floor, else object and face.
    fn id_at(&self, px: f32, py: f32) -> u32 {
        let cam = camera();
        let d = cam.ray(px, py, self.res);
        match self.trace(cam.eye, d) {
            Some((i, h)) => (i as u32 + 1) * 16 + h.id,
            None => FLOOR_ID,
        }
    }

    /// Linear RGB radiance through image point (px, py); `objects` false skips the object tests (the caller knows
    /// no object covers that pixel).
    fn shade(&self, px: f32, py: f32, objects: bool) -> V3 {
        let cam = camera();
        let d = cam.ray(px, py, self.res);
        if objects {
            if let Some((i, h)) = self.trace(cam.eye, d) {
                return self.shade_object(i, cam.eye + d * h.t, h.n, d);
            }
        }
        // Floor (z = 0); the camera always looks down at it.
        let t = -cam.eye.z / d.z;
        let p = cam.eye + d * t;
        self.shade_floor(p.x, p.y, floor_falloff(p.x, p.y))
    }

    fn shade_floor(&self, x: f32, y: f32, falloff: f32) -> V3 {
        let mut light = 1.0f32;
        let mut ao = 1.0f32;
        for ob in &self.objs {
            light *= ob.floor_light(x, y);
            ao *= ob.floor_ao(x, y);
        }
        let e = (0.30 * ao + 0.75 * self.key.z * light) * falloff;
        let g = FLOOR_ALBEDO * e;
        v3(g, g, g * 1.02)
    }

    fn shade_object(&self, i: usize, p: V3, n: V3, d: V3) -> V3 {
        let ob = &self.objs[i];
        let ndl = n.dot(self.key);
        let mut lit = if ndl > 0.0 { 1.0 } else { 0.0 };
        if lit > 0.0 {
            // Shadows cast by the other objects (hard; they are rare and small).
            let o = p + n * 1e-3;
            for (j, other) in self.objs.iter().enumerate() {
                if j != i {
                    let to_c = other.centre - o;
                    let along = to_c.dot(self.key);
                    if along > 0.0
                        && (to_c - self.key * along).len() < other.bound
                        && other.intersect(o, self.key, f32::MAX).is_some()
                    {
                        lit = 0.0;
                    }
                }
            }
        }
        let hemi = 0.5 + 0.5 * n.z;
        let ambient = 0.10 + 0.12 * hemi;
        let diffuse = 0.80 * ndl.max(0.0) * lit;
        let fill = 0.22 * n.dot(self.fill).max(0.0);
        // Blinn–Phong specular, exponent 64 by repeated squaring.
        let hv = (self.key - d).normalized();
        let mut s = n.dot(hv).max(0.0);
        for _ in 0..6 {
            s *= s;
        }
        let spec = 0.45 * s * lit;
        ob.albedo * (ambient + diffuse + fill) + v3(spec, spec, spec)
    }
}

/// Renders the objects into a CHW RGB uint8 image of `res`×`res`.
pub fn render(objects: &[Object], res: usize) -> Vec<u8> {
    let rf = res as f32;
    let scene = Scene {
        objs: objects.iter().map(|&o| Prepared::new(o, rf)).collect(),
        key: KEY_DIR.normalized(),
        fill: FILL_DIR.normalized(),
        res: rf,
    };
    // Pixel box covered by any object (clamped to the image).
    let mut covered = vec![false; res * res];
    let mut boxes = Vec::new();
    for ob in &scene.objs {
        let (x0, y0, x1, y1) = ob.screen;
        let bx0 = (x0.floor().max(0.0) as usize).min(res);
        let by0 = (y0.floor().max(0.0) as usize).min(res);
        let bx1 = (x1.ceil().max(0.0) as usize).min(res);
        let by1 = (y1.ceil().max(0.0) as usize).min(res);
        if bx0 < bx1 && by0 < by1 {
            boxes.push((bx0, by0, bx1, by1));
            for y in by0..by1 {
                covered[y * res + bx0..y * res + bx1].fill(true);
            }
        }
    }
    let mut rgb = vec![v3(0.0, 0.0, 0.0); res * res];
    // Surface ids at pixel corners inside the boxes: a pixel whose four corners agree is shaded with one sample.
    let mut corner_id = vec![u32::MAX; (res + 1) * (res + 1)];
    for &(bx0, by0, bx1, by1) in &boxes {
        for y in by0..=by1 {
            for x in bx0..=bx1 {
                let k = y * (res + 1) + x;
                if corner_id[k] == u32::MAX {
                    corner_id[k] = scene.id_at(x as f32, y as f32);
                }
            }
        }
    }
    const SS: usize = 4;
    let floor = floor_map(res);
    for y in 0..res {
        for x in 0..res {
            let i = y * res + x;
            if !covered[i] {
                rgb[i] = scene.shade_floor(floor.x[i], floor.y[i], floor.falloff[i]);
                continue;
            }
            let c = [
                corner_id[y * (res + 1) + x],
                corner_id[y * (res + 1) + x + 1],
                corner_id[(y + 1) * (res + 1) + x],
                corner_id[(y + 1) * (res + 1) + x + 1],
            ];
            if c.iter().all(|&v| v == c[0]) {
                rgb[i] = scene.shade(x as f32 + 0.5, y as f32 + 0.5, true);
            } else {
                let mut acc = v3(0.0, 0.0, 0.0);
                for sy in 0..SS {
                    for sx in 0..SS {
                        acc = acc
                            + scene.shade(
                                x as f32 + (sx as f32 + 0.5) / SS as f32,
                                y as f32 + (sy as f32 + 0.5) / SS as f32,
                                true,
                            );
                    }
                }
                rgb[i] = acc * (1.0 / (SS * SS) as f32);
            }
        }
    }
    let mut out = vec![0u8; 3 * res * res];
    for (i, c) in rgb.iter().enumerate() {
        out[i] = tone(c.x);
        out[res * res + i] = tone(c.y);
        out[2 * res * res + i] = tone(c.z);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hull_and_polygon_distance() {
        let hull = convex_hull(vec![
            (0.0, 0.0),
            (1.0, 0.0),
            (0.5, 0.5),
            (1.0, 1.0),
            (0.0, 1.0),
        ]);
        assert_eq!(hull.len(), 4);
        assert!((polygon_sdf(&hull, 0.5, 0.5) + 0.5).abs() < 1e-6);
        assert!((polygon_sdf(&hull, 2.0, 0.5) - 1.0).abs() < 1e-6);
    }

    /// Largest number of pixels of the 2-pixel frame of the image covered by the objects.
    pub(crate) fn border_hits(objects: &[Object], res: usize) -> usize {
        let rf = res as f32;
        let scene = Scene {
            objs: objects.iter().map(|&o| Prepared::new(o, rf)).collect(),
            key: KEY_DIR.normalized(),
            fill: FILL_DIR.normalized(),
            res: rf,
        };
        let mut hits = 0;
        for k in 0..res * 4 {
            let t = (k % res) as f32 + 0.5;
            let e = [1.0, rf - 1.0][(k / res) % 2];
            let (x, y) = if k < 2 * res { (t, e) } else { (e, t) };
            if scene.id_at(x, y) != FLOOR_ID {
                hits += 1;
            }
        }
        hits
    }

    #[test]
    fn objects_at_the_extremes_stay_inside_the_frame() {
        for x in [-1.0f32, 1.0] {
            for y in [0.0f32, 1.0] {
                for shape in Shape::ALL {
                    // The extreme placements used by synth (X range, near and far, largest size).
                    let wy = crate::data::synth::Y_NEAR
                        + y * (crate::data::synth::Y_FAR - crate::data::synth::Y_NEAR);
                    let o = Object {
                        shape,
                        x: x * crate::data::synth::X_RANGE * depth_scale(wy),
                        y: wy,
                        size: crate::data::synth::SIZE_MAX,
                        hue: 0.3,
                        yaw: 0.55,
                    };
                    assert_eq!(border_hits(&[o], 64), 0, "{o:?} touches the frame");
                }
            }
        }
        // And the test can fail: an object beyond the range is cut.
        let o = Object {
            shape: Shape::Cube,
            x: 2.6,
            y: 0.0,
            size: 0.7,
            hue: 0.3,
            yaw: 0.55,
        };
        assert!(border_hits(&[o], 64) > 0);
    }

    #[test]
    fn projection_inverts_rays() {
        let cam = camera();
        let d = cam.ray(10.0, 50.0, 64.0);
        let p = cam.eye + d * 7.0;
        let (x, y) = cam.project(p, 64.0);
        assert!((x - 10.0).abs() < 1e-3 && (y - 50.0).abs() < 1e-3);
    }
}
