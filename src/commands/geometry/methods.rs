//! `geometry`'s choices: which distance is pulled back through G, and how its Hessian is computed
//! (docs/spec/geometry_infogancr.md §A.1).

use crate::core::geometry::Reduction;
use anyhow::{bail, Result};
use serde::Serialize;

/// The image distance pulled back through G.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Distance {
    L2,
    Lpips,
    /// G's HP layer (1-based).
    Layer(usize),
}

impl Distance {
    /// `l2`, `lpips` or `layer:K`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "l2" => Ok(Self::L2),
            "lpips" => Ok(Self::Lpips),
            _ => {
                if let Some(k) = s.strip_prefix("layer:") {
                    if let Ok(k) = k.parse::<usize>() {
                        if k >= 1 {
                            return Ok(Self::Layer(k));
                        }
                    }
                }
                bail!("--distance {s}: expected l2, lpips or layer:K with K a 1-based HP layer index (as --hp-layers)")
            }
        }
    }

    /// The name in file names and reports.
    pub fn tag(self) -> String {
        match self {
            Self::L2 => "l2".into(),
            Self::Lpips => "lpips".into(),
            Self::Layer(k) => format!("layer{k}"),
        }
    }

    pub(super) fn reduction(self) -> Reduction {
        match self {
            Self::L2 => Reduction::Mean,
            Self::Lpips | Self::Layer(_) => Reduction::Sum,
        }
    }
}

/// How H is obtained (§A.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Method {
    /// The full matrix by n double-backprop passes, then a dense eigendecomposition.
    #[serde(rename = "bp")]
    Bp,
    /// Exact products by double backprop, then Lanczos.
    #[serde(rename = "backward-iter")]
    BackwardIter,
    /// Finite-difference products (central difference of gradients), then Lanczos.
    #[serde(rename = "forward-iter")]
    ForwardIter,
}

impl Method {
    /// `bp`, `backward-iter`, `forward-iter`, or `auto` (bp up to n = 1024, else backward-iter).
    pub fn parse(s: &str, n: i64) -> Result<Self> {
        Ok(match s {
            "bp" => Self::Bp,
            "backward-iter" => Self::BackwardIter,
            "forward-iter" => Self::ForwardIter,
            "auto" if n <= crate::core::geometry::hvp::BP_MAX_SIZE => Self::Bp,
            "auto" => Self::BackwardIter,
            _ => bail!("--methods {s}: expected bp, backward-iter, forward-iter or auto"),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Bp => "bp",
            Self::BackwardIter => "backward-iter",
            Self::ForwardIter => "forward-iter",
        }
    }

    /// The reference's tag in `.npz` names and keys (`Hess_BP_<i>.npz`, `eva_BP`).
    pub fn npz_tag(self) -> &'static str {
        match self {
            Self::Bp => "BP",
            Self::BackwardIter => "BackwardIter",
            Self::ForwardIter => "ForwardIter",
        }
    }

    /// The reference's Lanczos step limits: 20 for BackwardIter, 200 for ForwardIter.
    pub(super) fn default_max_steps(self) -> usize {
        match self {
            Self::ForwardIter => 200,
            _ => 20,
        }
    }
}
