//! Videos written frame by frame: MP4 through an `ffmpeg` child process fed raw RGB on its stdin (libx264, yuv420p),
//! or an animated GIF encoded in-process. Frames are never written to disk as separate images; the output appears
//! under its final name only when complete (docs/spec/progan_hp.md §7.1).

use crate::io::fs;
use anyhow::{bail, ensure, Context, Result};
use image::RgbImage;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

/// Container of a video.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VideoFormat {
    Mp4,
    Gif,
}

impl VideoFormat {
    pub fn extension(self) -> &'static str {
        match self {
            Self::Mp4 => "mp4",
            Self::Gif => "gif",
        }
    }
}

/// The reference's video bitrate (moviepy `bitrate="50M"`, docs/spec/progan_hp.md §7.1).
pub const MP4_BITRATE: &str = "50M";

/// GIF frame delay for `fps`: whole centiseconds, at least 2 (viewers slow delays below 2 cs down to 10 cs), so
/// 60 fps plays at 50 fps and 24 fps at 25 fps.
pub fn gif_delay_cs(fps: u32) -> u16 {
    ((100.0 / fps.max(1) as f64).round() as u16).max(2)
}

/// NeuQuant speed of a frame (1 = learn the palette from every pixel, 10 = from every tenth): small frames have
/// too few pixels for sampling, large ones take long to learn from all of them.
fn gif_speed(width: u32, height: u32) -> i32 {
    if (width as u64) * (height as u64) <= 512 * 512 {
        1
    } else {
        10
    }
}

/// `ffmpeg` on PATH, if any.
pub fn find_ffmpeg() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("ffmpeg"))
        .find(|p| p.is_file())
}

/// MP4 needs even frame sizes (yuv420p subsamples chroma 2×2): the frame padded with `value` on the right and
/// bottom to even dimensions.
pub fn pad_to_even(img: RgbImage, value: u8) -> RgbImage {
    let (w, h) = img.dimensions();
    let (ew, eh) = (w + w % 2, h + h % 2);
    if (ew, eh) == (w, h) {
        return img;
    }
    let mut out = RgbImage::from_pixel(ew, eh, image::Rgb([value; 3]));
    image::imageops::replace(&mut out, &img, 0, 0);
    out
}

enum Inner {
    Mp4 {
        child: Child,
        stdin: Option<BufWriter<ChildStdin>>,
        stderr: Option<std::thread::JoinHandle<String>>,
    },
    Gif {
        encoder: Option<gif::Encoder<BufWriter<std::fs::File>>>,
        /// Centiseconds per frame.
        delay: u16,
    },
}

/// A video being written to a temporary sibling of its path; [`VideoWriter::finish`] renames it into place, and
/// dropping it unfinished removes the temporary file (and stops ffmpeg).
pub struct VideoWriter {
    path: PathBuf,
    tmp: PathBuf,
    width: u32,
    height: u32,
    frames: usize,
    inner: Inner,
}

impl VideoWriter {
    /// Starts a video of `width`×`height` frames at `fps`. MP4 needs `ffmpeg` (the path of the executable) and
    /// even dimensions.
    pub fn create(
        path: &Path,
        format: VideoFormat,
        width: u32,
        height: u32,
        fps: u32,
        ffmpeg: Option<&Path>,
    ) -> Result<Self> {
        ensure!(
            width > 0 && height > 0 && fps > 0,
            "video {}: empty frames or zero fps",
            path.display()
        );
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create directory {}", parent.display()))?;
        }
        let tmp = fs::temp_sibling(path);
        let inner = match format {
            VideoFormat::Mp4 => {
                let ffmpeg = ffmpeg.context("MP4 output needs ffmpeg")?;
                ensure!(
                    width.is_multiple_of(2) && height.is_multiple_of(2),
                    "MP4 frames must have even dimensions, got {width}×{height}"
                );
                let mut child = Command::new(ffmpeg)
                    .args(["-hide_banner", "-loglevel", "error", "-y"])
                    .args(["-f", "rawvideo", "-pix_fmt", "rgb24"])
                    .args(["-s", &format!("{width}x{height}"), "-r", &fps.to_string()])
                    .args(["-i", "-", "-an", "-c:v", "libx264", "-pix_fmt", "yuv420p"])
                    .args(["-b:v", MP4_BITRATE, "-f", "mp4"])
                    .arg(&tmp)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .with_context(|| format!("cannot start {}", ffmpeg.display()))?;
                let stdin = child
                    .stdin
                    .take()
                    .map(|s| BufWriter::with_capacity(1 << 20, s));
                // Drained on a thread so a chatty ffmpeg can never block on a full pipe while we write frames.
                let stderr = child.stderr.take().map(|mut e| {
                    std::thread::spawn(move || {
                        let mut s = String::new();
                        let _ = e.read_to_string(&mut s);
                        s
                    })
                });
                Inner::Mp4 {
                    child,
                    stdin,
                    stderr,
                }
            }
            VideoFormat::Gif => {
                let file = std::fs::File::create(&tmp)
                    .with_context(|| format!("cannot create {}", tmp.display()))?;
                let (w, h) = (u16::try_from(width).ok(), u16::try_from(height).ok());
                let (Some(w), Some(h)) = (w, h) else {
                    bail!(
                        "GIF frames are at most 65535 pixels wide and high, got {width}×{height}"
                    );
                };
                let mut encoder = gif::Encoder::new(BufWriter::new(file), w, h, &[])
                    .with_context(|| format!("cannot write {}", tmp.display()))?;
                encoder.set_repeat(gif::Repeat::Infinite)?;
                Inner::Gif {
                    encoder: Some(encoder),
                    delay: gif_delay_cs(fps),
                }
            }
        };
        Ok(VideoWriter {
            path: path.to_path_buf(),
            tmp,
            width,
            height,
            frames: 0,
            inner,
        })
    }

    pub fn dimensions(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// Appends one frame (it must have the video's size).
    pub fn push(&mut self, frame: &RgbImage) -> Result<()> {
        ensure!(
            frame.dimensions() == (self.width, self.height),
            "video {}: frame of {:?}, expected {}×{}",
            self.path.display(),
            frame.dimensions(),
            self.width,
            self.height
        );
        match &mut self.inner {
            Inner::Mp4 { stdin, .. } => {
                let w = stdin.as_mut().context("ffmpeg input closed")?;
                if let Err(e) = w.write_all(frame.as_raw()) {
                    let msg = self.stop_ffmpeg();
                    bail!(
                        "ffmpeg stopped while writing {}: {e}; {msg}",
                        self.path.display()
                    );
                }
            }
            Inner::Gif { encoder, delay } => {
                let mut f = gif::Frame::from_rgb_speed(
                    self.width as u16,
                    self.height as u16,
                    frame.as_raw(),
                    gif_speed(self.width, self.height),
                );
                f.delay = *delay;
                encoder
                    .as_mut()
                    .context("GIF encoder closed")?
                    .write_frame(&f)
                    .with_context(|| format!("cannot encode {}", self.path.display()))?;
            }
        }
        self.frames += 1;
        Ok(())
    }

    /// Closes ffmpeg's input and waits for it; returns its error output in one line.
    fn stop_ffmpeg(&mut self) -> String {
        if let Inner::Mp4 {
            child,
            stdin,
            stderr,
        } = &mut self.inner
        {
            drop(stdin.take());
            let status = child.wait();
            let text = stderr
                .take()
                .and_then(|h| h.join().ok())
                .unwrap_or_default();
            let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
            return match status {
                Ok(s) if s.success() => String::new(),
                Ok(s) => format!("ffmpeg exited with {s}: {text}"),
                Err(e) => format!("cannot wait for ffmpeg: {e}"),
            };
        }
        String::new()
    }

    /// Finishes the file and renames it to its path; returns the number of frames.
    pub fn finish(mut self) -> Result<usize> {
        ensure!(self.frames > 0, "video {}: no frames", self.path.display());
        match &mut self.inner {
            Inner::Mp4 { stdin, .. } => {
                if let Some(mut w) = stdin.take() {
                    w.flush().with_context(|| {
                        format!("cannot write to ffmpeg for {}", self.path.display())
                    })?;
                }
                let msg = self.stop_ffmpeg();
                ensure!(
                    msg.is_empty(),
                    "ffmpeg failed on {}: {msg}",
                    self.path.display()
                );
            }
            Inner::Gif { encoder, .. } => {
                let enc = encoder.take().context("GIF encoder closed")?;
                let mut w = enc
                    .into_inner()
                    .with_context(|| format!("cannot finish {}", self.path.display()))?;
                w.flush()
                    .with_context(|| format!("cannot write {}", self.path.display()))?;
            }
        }
        std::fs::rename(&self.tmp, &self.path).with_context(|| {
            format!(
                "cannot rename {} to {}",
                self.tmp.display(),
                self.path.display()
            )
        })?;
        Ok(self.frames)
    }
}

impl Drop for VideoWriter {
    fn drop(&mut self) {
        if let Inner::Mp4 { child, stdin, .. } = &mut self.inner {
            if stdin.is_some() {
                drop(stdin.take());
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if let Inner::Gif { encoder, .. } = &mut self.inner {
            drop(encoder.take());
        }
        let _ = std::fs::remove_file(&self.tmp);
    }
}
