import { describe, expect, it } from 'vitest';
import { loadBareV86 } from './bare-v86.js';
import { installedV86Version, missingV86Internals, V86_INTERNALS, V86_VERSION } from '../../src/cpu/v86/adapter.js';

/**
 * The v86 adapter relies on internal names of one exact v86 build (src/cpu/v86/adapter.ts). This
 * loads that build (no guest: SeaBIOS only, never started) and names whatever is missing, so an
 * upgrade that renames an internal fails here, saying which, instead of as a guest that hangs.
 */
describe('v86 pin', () => {
  it('the installed v86 is the pinned version', () => {
    expect(installedV86Version(), `package.json pins v86 ${V86_VERSION}; run npm ci`).toBe(V86_VERSION);
  });

  it('every internal name the adapter uses exists in the loaded emulator', async () => {
    const emulator = await loadBareV86();
    try {
      const missing = missingV86Internals(emulator);
      expect(missing, `v86 ${installedV86Version()} lacks internals src/cpu/v86/adapter.ts relies on: ${missing.join(', ')}`).toEqual([]);
    } finally {
      await emulator.destroy();
    }
  });

  it('the check itself names what is missing', () => {
    // A stand-in with no v86 inside: the check must say so rather than pass.
    expect(missingV86Internals({})).toEqual(['emulator.v86.cpu (object)']);
    const missing = missingV86Internals({ v86: { cpu: { io: {}, devices: { pci: {} } } } });
    expect(missing.length).toBe(V86_INTERNALS.length - 1);
    expect(missing).toContain('cpu.devices.pci.raise_irq (function)');
  });
});
