/** Small statistics for benchmarks: timings are noisy, so report medians of several runs. */
export function median(values: number[]): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const idx = Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1));
  return s[idx]!;
}

export interface BenchResult {
  name: string;
  value: number;
  unit: string;
}

export function formatResults(title: string, results: BenchResult[]): string {
  const width = Math.max(...results.map((r) => r.name.length), 10);
  return [title, ...results.map((r) => `  ${r.name.padEnd(width)}  ${Number.isFinite(r.value) ? r.value.toFixed(r.value >= 100 ? 0 : 2) : 'n/a'} ${r.unit}`)].join('\n');
}
