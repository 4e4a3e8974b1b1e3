import { configDefaults, defineConfig } from 'vitest/config';

/**
 * The system tier (test/system/: real TAP devices in network namespaces, QEMU, tshark on real
 * runs) needs root. As another user it is left out and the run ends by naming what it skipped and
 * the command that runs it (test/setup/build.ts); as root, as in CI, nothing is skipped.
 */
const asRoot = process.getuid?.() === 0;

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    exclude: asRoot ? configDefaults.exclude : [...configDefaults.exclude, 'test/system/**'],
    globalSetup: ['test/setup/build.ts'],
    // System tests create network namespaces and TAP devices; they run one file at a time.
    fileParallelism: true,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
  },
});
