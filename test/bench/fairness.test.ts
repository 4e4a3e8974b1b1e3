import { describe, expect, it } from 'vitest';
import { jainIndex } from '../../bench/fairness.js';

describe("Jain's fairness index (bench fair)", () => {
  it('is 1 for equal shares, 1/n when one flow takes everything, in between otherwise', () => {
    expect(jainIndex([5, 5, 5, 5])).toBe(1);
    expect(jainIndex([8, 0, 0, 0])).toBeCloseTo(0.25);
    expect(jainIndex([3, 1])).toBeCloseTo(16 / 20);
    expect(jainIndex([])).toBeNaN();
  });
});
