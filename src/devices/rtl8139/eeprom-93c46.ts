/**
 * A 93C46 serial EEPROM in its 64 × 16-bit organisation, as it sits behind the RTL8139's 9346CR
 * register: the driver bit-bangs chip select (CS), the shift clock (SK) and data in (DI), and reads
 * data out (DO). Microwire protocol (93C46 datasheet):
 * - with CS high, DI is latched on each rising edge of SK; leading zeros are ignored until the
 *   start bit (1), then come a 2-bit opcode and 6 address bits;
 * - READ (10): after the last address bit DO drives a dummy 0, then each further rising edge of
 *   SK shifts out one data bit, MSB first; holding CS high keeps going into the next word
 *   (sequential read). Linux's 8139too relies on that bit-exact behaviour: it first reads word 0
 *   with 8 address bits (a 93C56's), which on a 93C46 clocks two data bits early and so does not
 *   yield 0x8129, and concludes the part takes 6;
 * - WRITE (01) and ERASE (11) take a word, ERAL/WRAL (00 10 / 00 01) all words, and only after
 *   EWEN (00 11); EWDS (00 00) disables programming again. Programming completes at once (a
 *   virtual part is never busy): DO reads 1 (ready) once CS is raised after the command;
 * - CS low ends any command.
 */
export const EEPROM_WORDS = 64;
const ADDRESS_BITS = 6;

type Phase =
  /** CS high, waiting for the start bit. */
  | { kind: 'start' }
  /** Shifting in opcode and address (`bits` counted after the start bit). */
  | { kind: 'command'; bits: number; value: number }
  /** Shifting out `word` (sequential read from `address`), `bit` = bits already shifted out. */
  | { kind: 'read'; address: number; bit: number }
  /** Shifting in 16 data bits for WRITE (address) or WRAL (address -1). */
  | { kind: 'data'; address: number; bits: number; value: number }
  /** Command done; further clocks are ignored until CS drops. */
  | { kind: 'done' };

export class Eeprom93c46 {
  readonly words = new Uint16Array(EEPROM_WORDS);
  private cs = false;
  private sk = false;
  private dout = 0;
  private writeEnabled = false;
  private phase: Phase = { kind: 'start' };
  /** A programming command completed while CS was high: DO reports ready after the next CS rise. */
  private programmed = false;
  /** READ commands decoded, and programming commands that changed words (WRITE, ERASE, ERAL, WRAL). */
  reads = 0;
  writes = 0;

  constructor(contents?: ArrayLike<number>) {
    if (contents) for (let i = 0; i < EEPROM_WORDS && i < contents.length; i++) this.words[i] = contents[i]! & 0xffff;
  }

  /** DO as the driver reads it (0 while CS is low: the pin is not driven). */
  get dataOut(): number {
    return this.cs ? this.dout : 0;
  }

  /** The pins as the 9346CR register drives them after a write. */
  setPins(cs: boolean, sk: boolean, di: boolean): void {
    if (!cs) {
      this.cs = false;
      this.sk = sk;
      this.phase = { kind: 'start' };
      this.dout = 0;
      return;
    }
    if (!this.cs) {
      // CS rising: a new command begins; after a programming cycle DO says "ready".
      this.cs = true;
      this.phase = { kind: 'start' };
      this.dout = this.programmed ? 1 : 0;
      this.programmed = false;
    }
    const rising = sk && !this.sk;
    this.sk = sk;
    if (rising) this.clock(di ? 1 : 0);
  }

  private clock(bit: number): void {
    const p = this.phase;
    switch (p.kind) {
      case 'start':
        if (bit) {
          this.phase = { kind: 'command', bits: 0, value: 0 };
          this.dout = 0;
        }
        return;
      case 'command': {
        const value = (p.value << 1) | bit;
        const bits = p.bits + 1;
        if (bits < 2 + ADDRESS_BITS) {
          this.phase = { kind: 'command', bits, value };
          return;
        }
        this.decode(value >> ADDRESS_BITS, value & (EEPROM_WORDS - 1));
        return;
      }
      case 'read': {
        // Each rising edge presents the next bit, MSB first; after bit 0 the next word follows.
        const word = this.words[p.address]!;
        this.dout = (word >> (15 - p.bit)) & 1;
        const bit1 = p.bit + 1;
        this.phase = bit1 === 16 ? { kind: 'read', address: (p.address + 1) % EEPROM_WORDS, bit: 0 } : { kind: 'read', address: p.address, bit: bit1 };
        return;
      }
      case 'data': {
        const value = ((p.value << 1) | bit) & 0xffff;
        const bits = p.bits + 1;
        if (bits < 16) {
          this.phase = { kind: 'data', address: p.address, bits, value };
          return;
        }
        if (p.address < 0) this.words.fill(value);
        else this.words[p.address] = value;
        this.finishProgramming();
        return;
      }
      case 'done':
        return;
    }
  }

  private decode(opcode: number, address: number): void {
    switch (opcode) {
      case 0b10: // READ: a dummy 0 first, then the word from the next rising edge on
        this.reads++;
        this.dout = 0;
        this.phase = { kind: 'read', address, bit: 0 };
        return;
      case 0b01: // WRITE
        this.phase = this.writeEnabled ? { kind: 'data', address, bits: 0, value: 0 } : { kind: 'done' };
        return;
      case 0b11: // ERASE: a programmed bit reads 1 when erased
        if (this.writeEnabled) {
          this.words[address] = 0xffff;
          this.finishProgramming();
        } else this.phase = { kind: 'done' };
        return;
      default: {
        // 00 + the top two address bits: EWDS 00, WRAL 01, ERAL 10, EWEN 11.
        const sub = address >> 4;
        if (sub === 0b11) this.writeEnabled = true;
        else if (sub === 0b00) this.writeEnabled = false;
        else if (sub === 0b10 && this.writeEnabled) {
          this.words.fill(0xffff);
          this.finishProgramming();
          return;
        } else if (sub === 0b01 && this.writeEnabled) {
          this.phase = { kind: 'data', address: -1, bits: 0, value: 0 };
          return;
        }
        this.phase = { kind: 'done' };
      }
    }
  }

  private finishProgramming(): void {
    this.writes++;
    this.programmed = true;
    this.phase = { kind: 'done' };
  }
}

/**
 * The RTL8139's EEPROM image (RTL8139 datasheet, "EEPROM (93C46) contents"): the 0x8129 ID word,
 * PCI vendor/device and subsystem IDs, and the Ethernet address in words 7–9, each word holding two
 * address bytes low byte first. Words the datasheet leaves to the board vendor read 0.
 */
export function rtl8139EepromImage(mac: Uint8Array, ids: { vendorId: number; deviceId: number; subsystemVendorId: number; subsystemId: number }): Uint16Array {
  const w = new Uint16Array(EEPROM_WORDS);
  w[0] = 0x8129;
  w[1] = ids.vendorId;
  w[2] = ids.deviceId;
  w[3] = ids.subsystemVendorId;
  w[4] = ids.subsystemId;
  for (let i = 0; i < 3; i++) w[7 + i] = mac[2 * i]! | (mac[2 * i + 1]! << 8);
  return w;
}
