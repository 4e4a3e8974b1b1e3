import { describe, expect, it } from 'vitest';
import { buildProgram } from '../../lab/cli.js';
import { DEBUG_COMPONENTS } from '../../src/log.js';

describe('lab --debug', () => {
  it('an unknown component is a usage error that names it and lists the known ones', () => {
    const program = buildProgram().exitOverride().configureOutput({ writeErr: () => {}, writeOut: () => {} });
    let message = '';
    try {
      program.parse(['--debug', 'rtl8139,tpc', 'config', 'check'], { from: 'user' });
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toContain('unknown component tpc');
    for (const c of DEBUG_COMPONENTS) expect(message).toContain(c);
  });

  it('--help lists the components', () => {
    let help = '';
    const program = buildProgram().configureOutput({ writeOut: (s) => (help += s) });
    program.outputHelp();
    expect(help).toContain(`Debug components (--debug, comma-separated, or "all"):\n  ${DEBUG_COMPONENTS.join(', ')}`);
  });
});
