import { MSR_SPEED_10 } from './registers.js';

/**
 * The RTL8139's built-in PHY as its MII-style registers show it (BMCR 0x62, BMSR 0x64, ANAR 0x66,
 * ANLPAR 0x68, ANER 0x6A) and the speed bit of MSR (0x58). The partner on the lab's wire always
 * advertises everything (ANLPAR 0x05E1: 10/100, half/full, pause), so autonegotiation settles on
 * the best mode both sides advertise — 100 Mb/s full duplex unless the guest narrows ANAR and
 * restarts autonegotiation. Linux's MII library reads ANAR & ANLPAR to choose speed and duplex, so
 * all five registers and MSR must tell the same story.
 */
export const BMCR_RESET = 0x8000;
export const BMCR_SPEED_100 = 0x2000;
export const BMCR_ANE = 0x1000;
export const BMCR_RESTART_AN = 0x0200;
export const BMCR_FULL_DUPLEX = 0x0100;

/** 100BASE-TX FD/HD, 10BASE-T FD/HD, autonegotiation complete and able, link up, extended regs. */
export const BMSR_VALUE = 0x782d;
export const BMSR_LINK = 0x0004;

export const ANAR_DEFAULT = 0x05e1;
/** The abilities a driver may advertise (pause, 100 FD/HD, 10 FD/HD); the selector is fixed. */
const ANAR_WRITABLE = 0x05e0;
export const ANLPAR_PARTNER = 0x05e1;
/** ANER: the link partner is autonegotiation-able. */
export const ANER_VALUE = 0x0001;

const ABILITY_100FD = 0x0100;
const ABILITY_100HD = 0x0080;
const ABILITY_10FD = 0x0040;

export class Media {
  anar = ANAR_DEFAULT;
  private speed100 = true;
  private fullDuplex = true;

  constructor() {
    this.negotiate();
  }

  get bmcr(): number {
    return BMCR_ANE | (this.speed100 ? BMCR_SPEED_100 : 0) | (this.fullDuplex ? BMCR_FULL_DUPLEX : 0);
  }

  /** MSR's media bits: SPEED_10 for 10 Mb/s; LINKB (link down) never, the cable is always in. */
  get msrMedia(): number {
    return this.speed100 ? 0 : MSR_SPEED_10;
  }

  /** Power-on / PHY reset: advertise everything again and renegotiate. */
  reset(): void {
    this.anar = ANAR_DEFAULT;
    this.negotiate();
  }

  writeBmcr(v: number): void {
    // Speed, duplex and autonegotiation enable are the negotiated result here (one link mode per
    // cable, as in QEMU); reset and restart are commands that complete at once and read back 0.
    if (v & BMCR_RESET) this.reset();
    else if (v & BMCR_RESTART_AN) this.negotiate();
  }

  writeAnar(v: number): void {
    this.anar = (v & ANAR_WRITABLE) | (ANAR_DEFAULT & ~ANAR_WRITABLE);
  }

  /** IEEE 802.3 clause 28B.3 priority: 100 FD, 100 HD, 10 FD, 10 HD (also the parallel-detect fallback). */
  private negotiate(): void {
    const common = this.anar & ANLPAR_PARTNER;
    if (common & ABILITY_100FD) [this.speed100, this.fullDuplex] = [true, true];
    else if (common & ABILITY_100HD) [this.speed100, this.fullDuplex] = [true, false];
    else if (common & ABILITY_10FD) [this.speed100, this.fullDuplex] = [false, true];
    else [this.speed100, this.fullDuplex] = [false, false];
  }
}
