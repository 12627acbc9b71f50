/**
 * The y axis of a chart: "nice" ticks (1, 2, 2.5, 5 × 10^n) whose labels all differ once formatted. No DOM
 * here, so the unit tests run it under node.
 */

/** The smallest "nice" number (1, 2, 2.5, 5 × 10^n) at or above `x`. */
export function niceStep(x: number): number {
  if (!(x > 0) || !Number.isFinite(x)) return 1;
  const mag = 10 ** Math.floor(Math.log10(x));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * mag >= x * (1 - 1e-12)) return m * mag;
  return 10 * mag;
}

export interface YAxis {
  /** The tick values from 0 to `top`, ascending. */
  readonly ticks: readonly number[];
  readonly top: number;
  readonly labels: readonly string[];
}

/**
 * About `count` ticks from 0 to at least `max`. A step finer than the labels can show (0.5 B/s labelled
 * "1 B/s" and "0 B/s" alike) gives repeated labels: the step grows to the next nice one until every label
 * differs, so a small rate reads "0, 1, 2 B/s" rather than "0, 1, 1, 2, 2 B/s". `minStep` is the smallest
 * step that means anything (1 for whole bytes).
 */
export function yAxis(max: number, format: (v: number) => string, count = 4, minStep = 0): YAxis {
  const high = Number.isFinite(max) && max > 0 ? max : 0;
  let step = niceStep(Math.max(high / count, minStep));
  for (let tries = 0; tries < 40; tries++) {
    const top = Math.max(step, Math.ceil(high / step - 1e-9) * step);
    const ticks: number[] = [];
    for (let i = 0; i * step <= top + step / 2; i++) ticks.push(i * step);
    const labels = ticks.map(format);
    if (new Set(labels).size === labels.length) return { ticks, top, labels };
    step = niceStep(step * 1.0001);
  }
  return { ticks: [0, high], top: high || 1, labels: [format(0), format(high)] };
}
