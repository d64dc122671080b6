//! Command-line spellings of the library's enums. The library's types do not depend on clap; each one gets a
//! `ValueEnum` twin here, and `From` turns the parsed twin into the library's type (an exhaustive match, so a new
//! variant that is not offered on the command line fails to compile).

use crate::commands::figures::Fig;
use crate::commands::score::ScoreMethod;
use crate::commands::sweep::Runner;
use crate::core::discover::{DirectionInit, SearchSpace};
use crate::core::precision::Precision;
use crate::data::synth::Kind as SynthKind;
use crate::io::video::VideoFormat;

macro_rules! choice {
    ($(#[$meta:meta])* $cli:ident => $lib:ident { $($(#[$vmeta:meta])* $variant:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
        pub enum $cli {
            $($(#[$vmeta])* $variant),+
        }

        impl From<$cli> for $lib {
            fn from(value: $cli) -> Self {
                match value {
                    $($cli::$variant => $lib::$variant),+
                }
            }
        }
    };
}

choice!(
    /// `--precision`: the arithmetic of the adversarial passes.
    PrecisionArg => Precision {
        /// IEEE float32 everywhere (the reference's arithmetic).
        Fp32,
        /// TensorFloat-32 matmuls and convolutions on CUDA (Ampere and newer); no effect on CPU.
        Tf32,
        /// bfloat16 autocast (convolutions and matmuls in bf16, reductions in float32).
        Bf16,
    }
);

choice!(
    /// Container of a video.
    VideoFormatArg => VideoFormat {
        Mp4,
        Gif,
    }
);

choice!(
    /// The synthetic dataset kinds.
    SynthKindArg => SynthKind {
        /// One object; factors x, y, colour, shape (the reference's infogan_nz 4).
        ClevrSimple,
        /// Two objects; per object x, y, colour, shape, size (10 factors).
        ClevrComplex,
        /// One object moving horizontally: one factor.
        #[value(name = "clevr-1fov")]
        Clevr1fov,
        /// dSprites: shape, scale, orientation, posX, posY; 64×64 binary.
        Dsprites,
    }
);

choice!(
    /// Which figure to make.
    FigArg => Fig {
        /// |H| at the output element with the largest per-pixel HP (k 200): rows = models, columns = samples.
        Hessians,
        /// Table 2: fraction of per-element Hessians with their max on the diagonal, relative diagonal strength.
        Diag,
        /// Per-pixel HP (k 2, max over channels) over the generated images.
        Heatmaps,
        /// Activeness of each z component (variance over z_i ∈ {−2, 0, 2}), bar charts per dataset.
        Active,
    }
);

choice!(
    /// `score --method`: which codes a model is scored with.
    ScoreMethodArg => ScoreMethod {
        /// Encoder-free for every model, plus the Q head where a model has one.
        Auto,
        /// Encoder-free only (z components through the factor predictor).
        Free,
        /// The InfoGAN Q head on real images only.
        Q,
    }
);

choice!(
    /// `discover --search-space`: the components of z the directions live in.
    SearchSpaceArg => SearchSpace {
        /// Every component.
        All,
        /// The first third (BigGAN: 0–39, the coarse blocks).
        Coarse,
        /// The middle third (BigGAN: 40–79).
        Mid,
        /// The last third (BigGAN: 80–119, the fine blocks).
        Fine,
    }
);

choice!(
    /// `discover --init`: how the directions start.
    DirectionInitArg => DirectionInit {
        /// Kaiming-normal rows, orthonormalised.
        Random,
        /// The coordinate axes.
        Coords,
    }
);

choice!(
    /// `sweep --runner`: where the runs execute.
    RunnerArg => Runner {
        /// Child processes on this machine (--parallel at a time).
        Local,
        /// A Slurm job array (sweep.sbatch), one task per run, submitted with sbatch.
        Slurm,
    }
);
