//! The reference's TF variable layouts and its two fused resampling convolutions, transcribed to libtorch
//! (docs/spec/progan_hp.md §1.2, §1.7). The checkpoint importer uses [`tf_weight_to_tch`]; the fused ops pin the import rule in
//! tests (our layers, plain and fast, must reproduce them from the converted weights).

use super::layers::sum_of_shifts;
use anyhow::{bail, ensure, Result};
use tch::Tensor;

/// TF local variable name (`8x8/Conv0_up/weight`) → our VarStore name relative to the network's path
/// (`8x8.Conv0_up.weight`).
pub fn tf_name_to_tch(tf_name: &str) -> String {
    tf_name.replace('/', ".")
}

/// Converts one unscaled TF variable to our layout (the equalised-LR scale stays a run-time constant in both):
/// * `…/bias`: unchanged;
/// * dense `…/weight` `[in, out]` → `[out, in]`;
/// * conv `…/weight` `[kh, kw, in, out]` → `[out, in, kh, kw]`;
/// * G's `…/Conv0_up/weight` is additionally rotated by 180° in the spatial dims: TF's fused
///   `upscale2d_conv2d` equals nearest ×2 + SAME conv with the rotated kernel (docs/spec/progan_hp.md §1.2). D's `Conv1_down` is not
///   rotated: the fused `conv2d_downscale2d` equals conv with the same kernel + 2×2 average pooling.
///
/// `lod` (a non-trainable scalar in the TF graph) and anything else is an error: lod is an argument of `forward`.
pub fn tf_weight_to_tch(tf_name: &str, value: &Tensor) -> Result<Tensor> {
    let parts: Vec<&str> = tf_name.split('/').collect();
    let dims = value.size();
    match parts.last() {
        Some(&"bias") => {
            ensure!(
                dims.len() == 1,
                "TF variable {tf_name}: a bias must be 1-D, got shape {dims:?}"
            );
            Ok(value.shallow_clone())
        }
        Some(&"weight") => match dims.len() {
            2 => Ok(value.transpose(0, 1).contiguous()),
            4 => {
                let w = value.permute([3, 2, 0, 1]);
                let rotate = parts.len() >= 2 && parts[parts.len() - 2] == "Conv0_up";
                Ok(if rotate { w.flip([2, 3]) } else { w }.contiguous())
            }
            _ => bail!("TF variable {tf_name}: a weight must be 2-D (dense) or 4-D (conv), got shape {dims:?}"),
        },
        _ => bail!("TF variable {tf_name} is not a trainable weight or bias of the ProGAN networks"),
    }
}

/// TF's `upscale2d_conv2d` (fused nearest ×2 + conv3×3) with a TF-layout kernel `w_tf = [3, 3, in, out]` that
/// already includes the equalised-LR scale: the channel axes are swapped to `[3, 3, out, in]`, the kernel is
/// zero-padded to 5×5 and its four 1-pixel shifts are summed into a 4×4 kernel, applied as a stride-2 transposed
/// convolution with SAME padding (1 on each side). tch's transposed-conv weight is `[in, out, 4, 4]`.
pub fn tf_upscale2d_conv2d(x: &Tensor, w_tf: &Tensor) -> Tensor {
    // [3, 3, in, out] → [in, out, 3, 3] (= TF's [3, 3, out, in] in tch's transposed-conv layout), pad to 5×5.
    let w = w_tf.permute([2, 3, 0, 1]).constant_pad_nd([1, 1, 1, 1]);
    let k = sum_of_shifts(&w);
    x.conv_transpose2d(&k, None::<Tensor>, [2, 2], [1, 1], [0, 0], 1, [1, 1])
}

/// TF's `conv2d_downscale2d` (fused conv3×3 + 2×2 average pool) with a TF-layout, already scaled kernel
/// `[3, 3, in, out]`: zero-pad to 5×5, 0.25 × the sum of the four shifts, stride-2 conv with SAME padding (1).
pub fn tf_conv2d_downscale2d(x: &Tensor, w_tf: &Tensor) -> Tensor {
    let w = w_tf.permute([3, 2, 0, 1]).constant_pad_nd([1, 1, 1, 1]);
    let k = sum_of_shifts(&w) * 0.25;
    x.conv2d(&k, None::<Tensor>, [2, 2], [1, 1], [1, 1], 1)
}
