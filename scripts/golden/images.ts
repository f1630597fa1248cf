/**
 * Image tensors of the golden runners: float32 NCHW values with their shape, made from the cases'
 * uint8 HWC images exactly as the reference code did (`u8 / 127.5 - 1`, each step rounded to float32).
 *
 * @module
 */

import { type HostTensor, toFloat32 } from "../../ffi/host_tensor.ts";

/** Float32 NCHW images. */
export interface Images {
  values: Float32Array;
  shape: number[];
}

/** uint8 HWC / NHWC -> float32 NCHW in [-1, 1] (u8 / 127.5 - 1, rounded like float32 torch ops). */
export function u8ImageToNchw(t: HostTensor): Images {
  const shape = t.shape.length === 3 ? [1, ...t.shape] : t.shape;
  if (shape.length !== 4) throw new Error(`expected a uint8 image [H,W,C] or [N,H,W,C], got [${t.shape}]`);
  const [n, h, w, c] = shape as [number, number, number, number];
  const src = toFloat32(t);
  const out = new Float32Array(n * c * h * w);
  for (let b = 0; b < n; b++) {
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        for (let ch = 0; ch < c; ch++) {
          out[((b * c + ch) * h + y) * w + x] = Math.fround(
            Math.fround(src[((b * h + y) * w + x) * c + ch]! / 127.5) - 1,
          );
        }
      }
    }
  }
  return { values: out, shape: [n, c, h, w] };
}
