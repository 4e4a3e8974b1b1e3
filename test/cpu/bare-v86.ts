import { V86 } from 'v86';

/** The pinned v86 loaded with no guest (SeaBIOS only, never started): its internals to look at. */
export async function loadBareV86(): Promise<V86> {
  const emulator = new V86({
    wasm_path: new URL('../../node_modules/v86/build/v86.wasm', import.meta.url).pathname,
    memory_size: 8 * 1024 * 1024,
    autostart: false,
    disable_keyboard: true,
    disable_mouse: true,
    disable_speaker: true,
  } as ConstructorParameters<typeof V86>[0]);
  await new Promise<void>((resolve) => emulator.add_listener('emulator-loaded', () => resolve()));
  return emulator;
}
