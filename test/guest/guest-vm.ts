/** Test helpers: the simulated guest and host live in lab/sim.ts (benchmarks use them too). */
export { ip, seeded, simGuest as testGuest, simHost as hostOn, type SimGuestOptions as TestGuestOptions } from '../../lab/sim.js';
