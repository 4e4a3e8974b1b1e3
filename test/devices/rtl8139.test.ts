import { describe, expect, it } from 'vitest';
import { multicastHashBit } from '../../src/devices/ether-crc.js';
import { isNic } from '../../src/vmm/device.js';
import { cabledVm } from './cabled-vm.js';

const MAC = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const XML = `<vm class="PC" name="t"><memory>16</memory><devices>
<device class="8259A" id="PIC"/><device class="PCI" id="pci0"/>
<device class="RTL8139" id="net0"><bus>pci0</bus><mac>52:54:00:12:34:56</mac></device>
</devices></vm>`;

/** One VM with an RTL8139 at I/O 0xC000, its cable's far end (`wire`) and what arrives there. */
function machine(link: { flowControl?: boolean } = {}, via: 'io' | 'mmio' = 'io') {
  const { vm, clock, wire, got, nic } = cabledVm(XML, link);
  const io = 0xc000;
  // BAR1 maps the same 256 registers into memory space (Linux 6.1's 8139too uses it by default).
  vm.io.outl(0xcf8, 0x80000800 | 0x14);
  const mem = (vm.io.inl(0xcfc) & ~0xf) >>> 0;
  const rd = (o: number, size: 1 | 2 | 4): number => (via === 'io' ? vm.io.in(io + o, size) : vm.io.mmioRead(mem + o, size));
  const wr = (o: number, size: 1 | 2 | 4, v: number): void => (via === 'io' ? vm.io.out(io + o, size, v) : vm.io.mmioWrite(mem + o, size, v));
  const r8 = (o: number): number => rd(o, 1);
  const r16 = (o: number): number => rd(o, 2);
  const r32 = (o: number): number => rd(o, 4);
  const w8 = (o: number, v: number): void => wr(o, 1, v);
  const w16 = (o: number, v: number): void => wr(o, 2, v);
  const w32 = (o: number, v: number): void => wr(o, 4, v);
  const counters = (): Record<string, number> => nic.counters();
  return { vm, clock, wire, got, io, r8, r16, r32, w8, w16, w32, counters };
}
type M = ReturnType<typeof machine>;

const RX_RING = 0x20000;

/** Receiver on: an 8 KiB ring at RX_RING in WRAP mode, accepting own unicast and broadcast. */
function receiving(m: M, rcr = 0x8a): void {
  m.w32(0x30, RX_RING);
  m.w8(0x37, 0x0c);
  m.w32(0x44, rcr);
  m.w16(0x3c, 0xffff);
}

function frameTo(dst: number[], len: number, tag = 0): Uint8Array {
  const f = new Uint8Array(len);
  f.set(dst);
  f.set([2, 0, 0, 0, 0, 9], 6);
  f[12] = 0x88;
  f[13] = 0xb5;
  f[14] = tag;
  return f;
}

function header(m: M, at: number): { status: number; length: number } {
  const b = m.vm.memory.bytes;
  return { status: b[at]! | (b[at + 1]! << 8), length: b[at + 2]! | (b[at + 3]! << 8) };
}

/**
 * Linux 8139too's read_eeprom, transcribed bit for bit: 9346CR = EE_ENB & ~EE_CS, EE_ENB; the
 * command (start bit + opcode 10 + address, preceded by two zeros) shifted out MSB first with a
 * rising EESK per bit; EE_ENB; 16 times: EESK high, sample EEDO, EESK low; finally ~EE_CS. Every
 * eeprom_delay() is the 32-bit read of 9346CR it is in Linux.
 */
function linuxReadEeprom(m: M, location: number, addrLen: number): number {
  const EE_CS = 0x08;
  const EE_ENB = 0x80 | EE_CS;
  const delay = (): void => void m.r32(0x50);
  const cmd = location | (6 << addrLen);
  m.w8(0x50, EE_ENB & ~EE_CS);
  m.w8(0x50, EE_ENB);
  delay();
  for (let i = 4 + addrLen; i >= 0; i--) {
    const d = cmd & (1 << i) ? 0x02 : 0;
    m.w8(0x50, EE_ENB | d);
    delay();
    m.w8(0x50, EE_ENB | d | 0x04);
    delay();
  }
  m.w8(0x50, EE_ENB);
  delay();
  let v = 0;
  for (let i = 16; i > 0; i--) {
    m.w8(0x50, EE_ENB | 0x04);
    delay();
    v = (v << 1) | (m.r8(0x50) & 0x01 ? 1 : 0);
    m.w8(0x50, EE_ENB);
    delay();
  }
  m.w8(0x50, ~EE_CS & 0xff);
  delay();
  return v;
}

describe('RTL8139 model: reset and identity', () => {
  it('resets as the datasheet says: CR 0x01 (BUFE), CAPR 0xFFF0, IDR = MAC, original-RTL8139 version bits', () => {
    const m = machine();
    m.w8(0x37, 0x10);
    expect(m.r8(0x37)).toBe(0x01);
    expect(m.r16(0x38)).toBe(0xfff0);
    expect([0, 1, 2, 3, 4, 5].map((i) => m.r8(i))).toEqual(MAC);
    // 8139too's rtl_chip_info: HW_REVID(1,0,0,0,0,0,0) is "RTL-8139" (not C+, no twister thread).
    expect(m.r32(0x40) & 0x7cc00000).toBe(0x40000000);
    // PCI revision < 0x20, or 8139too hands the card to 8139cp.
    m.vm.io.outl(0xcf8, 0x80000808);
    expect(m.vm.io.inb(0xcfc)).toBeLessThan(0x20);
  });

  it('a soft reset keeps IDR and MAR (datasheet: CR.RST), a power-on style autoload restores IDR from the EEPROM', () => {
    const m = machine();
    m.w32(0x00, 0x44332211);
    m.w32(0x04, 0x6655);
    m.w32(0x08, 0xdeadbeef);
    m.w8(0x37, 0x10);
    expect(m.r32(0x00)).toBe(0x44332211);
    expect(m.r16(0x04)).toBe(0x6655);
    expect(m.r16(0x06)).toBe(0); // reserved bytes of a 32-bit MAC write are not stored
    expect(m.r32(0x08)).toBe(0xdeadbeef);
    m.w8(0x50, 0x40); // EEM = 01: auto-load
    expect([0, 1, 2, 3, 4, 5].map((i) => m.r8(i))).toEqual(MAC);
    expect(m.r8(0x50) & 0xc0).toBe(0); // back in normal mode
  });
});

describe('RTL8139 model: 93C46 EEPROM behind 9346CR', () => {
  it('answers 8139too read_eeprom bit for bit: 8-bit addressing misses 0x8129, 6-bit reads it, MAC in words 7-9', () => {
    const m = machine();
    // rtl8139_init_one: read_eeprom(ioaddr, 0, 8) == 0x8129 ? 8 : 6. On a 93C46 the two extra
    // address clocks already shift out D15, D14, so the word comes back shifted: not 0x8129.
    const probe = linuxReadEeprom(m, 0, 8);
    expect(probe).not.toBe(0x8129);
    expect(probe).toBe(((0x8129 << 2) & 0xffff) | (0x10ec >> 14));
    expect(linuxReadEeprom(m, 0, 6)).toBe(0x8129);
    const words = [7, 8, 9].map((w) => linuxReadEeprom(m, w, 6));
    expect(words).toEqual([0x5452, 0x1200, 0x5634]);
    const mac = words.flatMap((w) => [w & 0xff, w >> 8]);
    expect(mac).toEqual(MAC);
    expect(m.counters().eepromReads).toBe(5);
    // read_eeprom ends by writing ~EE_CS (0xF7): EEM = 11, the config registers unlocked, and
    // the EEPROM deselected — the register reads back without the reserved bits or EEDO.
    expect(m.r8(0x50)).toBe(0xc6);
  });

  it('answers the same over the MMIO BAR (Linux 6.1 8139too without use_io=1)', () => {
    const m = machine({}, 'mmio');
    expect(linuxReadEeprom(m, 0, 8)).not.toBe(0x8129);
    expect([7, 8, 9].map((w) => linuxReadEeprom(m, w, 6))).toEqual([0x5452, 0x1200, 0x5634]);
    receiving(m);
    m.wire.send(frameTo(MAC, 60));
    m.clock.runUntil(() => false, 1);
    expect(header(m, RX_RING).status).toBe(0x4001);
    expect(m.vm.failures.size).toBe(0);
  });

  it('drives EEDO only in programming mode with CS high: a dummy 0 after the address, then D15 first', () => {
    const m = machine();
    const pins = (cs: number, sk: number, di: number): number => {
      m.w8(0x50, 0x80 | (cs << 3) | (sk << 2) | (di << 1));
      return m.r8(0x50) & 1;
    };
    pins(1, 0, 0);
    for (const bit of [1, 1, 0, 0, 0, 0, 1, 1, 1]) {
      // start, READ (10), address 000111 = word 7
      pins(1, 0, bit);
      pins(1, 1, bit);
    }
    expect(pins(1, 0, 0)).toBe(0); // the dummy bit
    let word = 0;
    for (let i = 0; i < 16; i++) {
      word = (word << 1) | pins(1, 1, 0);
      pins(1, 0, 0);
    }
    expect(word).toBe(0x5452);
    // Sequential read: CS still high, the next word (8) follows.
    let next = 0;
    for (let i = 0; i < 16; i++) {
      next = (next << 1) | pins(1, 1, 0);
      pins(1, 0, 0);
    }
    expect(next).toBe(0x1200);
    // Normal mode: EEDO reads 0 whatever the EEPROM holds.
    m.w8(0x50, 0x00);
    expect(m.r8(0x50)).toBe(0);
  });

  it('programs a word only after EWEN (WRITE), and reads it back', () => {
    const m = machine();
    const clockBits = (bits: number[]): void => {
      for (const b of bits) {
        m.w8(0x50, 0x88 | (b << 1));
        m.w8(0x50, 0x8c | (b << 1));
      }
    };
    const cycle = (bits: number[]): void => {
      m.w8(0x50, 0x80);
      m.w8(0x50, 0x88);
      clockBits(bits);
      m.w8(0x50, 0x80);
    };
    const data = (v: number): number[] => Array.from({ length: 16 }, (_, i) => (v >> (15 - i)) & 1);
    cycle([1, 0, 1, 1, 1, 1, 1, 1, 1, ...data(0xbeef)]); // WRITE word 63 while disabled: ignored
    expect(linuxReadEeprom(m, 63, 6)).toBe(0);
    cycle([1, 0, 0, 1, 1, 0, 0, 0, 0]); // EWEN
    cycle([1, 0, 1, 1, 1, 1, 1, 1, 1, ...data(0xbeef)]);
    expect(linuxReadEeprom(m, 63, 6)).toBe(0xbeef);
    expect(m.counters().eepromWrites).toBe(1);
  });
});

describe('RTL8139 model: media registers', () => {
  it('reports 100 Mb/s full duplex, link up, with ANAR/ANLPAR saying what autonegotiation agreed', () => {
    const m = machine();
    expect(m.r8(0x58) & 0x0c).toBe(0); // MSR: SPEED_10 clear (100 Mb/s), LINKB clear (link up)
    expect(m.r16(0x62)).toBe(0x3100); // BMCR: 100 Mb/s, autonegotiation, full duplex
    expect(m.r16(0x64)).toBe(0x782d); // BMSR: abilities, autonegotiation complete, link up
    expect(m.r16(0x66)).toBe(0x05e1);
    expect(m.r16(0x68)).toBe(0x05e1);
    // Linux's mii_check_media: media = mii_nway_result(lpa & advertise) → LPA_100FULL.
    const common = m.r16(0x66) & m.r16(0x68);
    expect(common & 0x0100).toBe(0x0100);
  });

  it('renegotiates when the driver narrows ANAR and restarts autonegotiation; MSR and BMCR follow', () => {
    const m = machine();
    m.w16(0x66, 0x0061); // advertise 10 Mb/s full and half only
    expect(m.r8(0x58) & 0x08).toBe(0); // not until autonegotiation restarts
    m.w8(0x50, 0xc0);
    m.w16(0x62, 0x1200); // mii_nway_restart: BMCR | RESTART_AN
    m.w8(0x50, 0x00);
    expect(m.r8(0x58) & 0x08).toBe(0x08);
    expect(m.r16(0x62)).toBe(0x1100); // 10 Mb/s, full duplex; restart reads back 0
    m.w16(0x62, 0x8000); // PHY reset: advertise everything again
    expect(m.r16(0x66)).toBe(0x05e1);
    expect(m.r8(0x58) & 0x08).toBe(0);
  });
});

describe('RTL8139 model: receive', () => {
  it('receives into the ring with header, padded frame and FCS; CAPR advances; drops when full', () => {
    const m = machine({ flowControl: false });
    receiving(m);
    const f = frameTo(MAC, 42);
    m.wire.send(f);
    m.wire.send(frameTo([0x52, 0x54, 0x00, 0x99, 0x99, 0x99], 42)); // not ours: filtered silently
    m.clock.runUntil(() => false, 1);
    expect(m.r8(0x37) & 1).toBe(0);
    expect(header(m, RX_RING)).toEqual({ status: 0x4001, length: 64 }); // ROK | PAM; 60 padded + FCS
    expect([...m.vm.memory.bytes.subarray(RX_RING + 4, RX_RING + 4 + 42)]).toEqual([...f]);
    expect(m.r16(0x3a)).toBe(68);
    expect(m.r16(0x3e) & 1).toBe(1);
    m.w16(0x38, 68 - 16);
    expect(m.r8(0x37) & 1).toBe(1);
    // Fill the ring without reading: it must refuse and count, never overwrite unread data.
    for (let i = 0; i < 200; i++) m.wire.send(f.slice());
    m.clock.runUntil(() => false, 1);
    expect(m.counters().rxDropRingFull).toBeGreaterThan(0);
    expect(m.r16(0x3e) & 0x10).toBe(0x10);
    expect(m.r32(0x4c)).toBe(m.counters().rxDropRingFull);
  });

  it('marks own unicast PAM (0x4000), broadcast BAR (0x2000) and hashed multicast MAR (0x8000), each with ROK', () => {
    const m = machine();
    receiving(m, 0x8e); // APM | AM | AB | WRAP
    const group = [0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb];
    const bit = multicastHashBit(new Uint8Array(group));
    m.w8(0x08 + (bit >> 3), 1 << (bit & 7));
    m.wire.send(frameTo(MAC, 60));
    m.wire.send(frameTo([0xff, 0xff, 0xff, 0xff, 0xff, 0xff], 60));
    m.wire.send(frameTo(group, 60));
    m.wire.send(frameTo([0x01, 0x00, 0x5e, 0x00, 0x00, 0x01], 60)); // not in the hash: ignored
    m.clock.runUntil(() => false, 1);
    expect([0, 1, 2].map((i) => header(m, RX_RING + 68 * i).status)).toEqual([0x4001, 0x2001, 0x8001]);
    expect(m.r16(0x3a)).toBe(3 * 68);
  });

  it('drops and counts a giant over 1518 bytes (the segment discards it) and never holds it; 1518 itself is stored', () => {
    // Before: a 1642-byte frame was stored, Linux's 8139too reset its receiver, and the model's
    // ring pointers stayed where they were.
    const m = machine({ flowControl: true });
    receiving(m);
    m.wire.send(frameTo(MAC, 1642));
    m.wire.send(frameTo(MAC, 1519));
    m.wire.send(frameTo(MAC, 1518, 5));
    m.clock.runUntil(() => false, 1);
    expect(header(m, RX_RING)).toEqual({ status: 0x4001, length: 1522 });
    expect(m.vm.memory.bytes[RX_RING + 4 + 14]).toBe(5);
    expect(m.counters()).toMatchObject({ rxFrames: 1, rxDropGiant: 2, rxHeldRingFull: 0 });
  });

  it('with flow control, a frame the ring can never hold is dropped, not held: the frames behind it arrive', () => {
    // Before: a 9000-byte frame against an 8 KiB ring was answered 'busy' forever and the link
    // held it and everything behind it.
    const m = machine({ flowControl: true });
    receiving(m);
    m.wire.send(frameTo(MAC, 9000));
    m.wire.send(frameTo(MAC, 60, 1));
    m.clock.runUntil(() => false, 1);
    expect(m.counters().rxFrames).toBe(1);
    expect(m.counters().rxHeldRingFull).toBe(0);
    expect(m.vm.memory.bytes[RX_RING + 4 + 14]).toBe(1);
  });

  it('with flow control, a frame that fits once the driver frees room is held and then delivered', () => {
    const m = machine({ flowControl: true });
    receiving(m);
    for (let i = 0; i < 6; i++) m.wire.send(frameTo(MAC, 1500, i)); // 6 × 1512 > 8 KiB
    m.clock.runUntil(() => false, 1);
    expect(m.counters()).toMatchObject({ rxFrames: 5, rxHeldRingFull: 1, rxDropRingFull: 0 });
    m.w16(0x38, 1512 - 16); // the driver consumed one packet
    m.clock.runUntil(() => false, 1);
    expect(m.counters().rxFrames).toBe(6);
  });

  it('HLTCLK "H" stops the receiver\'s clock until "R"', () => {
    const m = machine();
    receiving(m);
    m.w8(0x5b, 0x48);
    m.wire.send(frameTo(MAC, 60));
    m.clock.runUntil(() => false, 1);
    expect(m.counters()).toMatchObject({ rxFrames: 0, rxDropDisabled: 1 });
    m.w8(0x5b, 0x52);
    m.wire.send(frameTo(MAC, 60));
    m.clock.runUntil(() => false, 1);
    expect(m.counters().rxFrames).toBe(1);
  });
});

describe('RTL8139 model: receive ring resets', () => {
  it("8139too's rtl8139_rx_err (RE off, RE on, RCR rewritten) puts CBR and CAPR back to the start: no stale packet is replayed", () => {
    const m = machine();
    receiving(m);
    m.wire.send(frameTo(MAC, 1500, 1));
    m.wire.send(frameTo(MAC, 100, 2));
    m.clock.runUntil(() => false, 1);
    expect(m.r16(0x3a)).toBeGreaterThan(0);
    const cr = m.r8(0x37);
    m.w8(0x37, cr & ~0x08);
    m.w8(0x37, cr);
    m.w32(0x44, 0x8a);
    expect(m.r16(0x3a)).toBe(0); // CBR
    expect(m.r16(0x38)).toBe(0xfff0); // CAPR
    expect(m.r8(0x37) & 1).toBe(1); // BUFE: nothing to read
    // The driver now reads from offset 0: the next frame must be there, not the old one.
    m.wire.send(frameTo(MAC, 60, 3));
    m.clock.runUntil(() => false, 1);
    expect(header(m, RX_RING)).toEqual({ status: 0x4001, length: 64 });
    expect(m.vm.memory.bytes[RX_RING + 4 + 14]).toBe(3);
    expect(m.r16(0x3a)).toBe(68);
  });

  it('a soft reset and a ring-size change reset the ring; a plain RCR rewrite (set_rx_mode) does not', () => {
    const m = machine();
    receiving(m);
    m.wire.send(frameTo(MAC, 60));
    m.clock.runUntil(() => false, 1);
    expect(m.r16(0x3a)).toBe(68);
    m.w32(0x44, 0x8b); // promiscuous on, "without stopping the chip"
    expect(m.r16(0x3a)).toBe(68);
    expect(m.r8(0x37) & 1).toBe(0); // the unread packet is still there
    m.w32(0x44, 0x8b | (1 << 11)); // 16 KiB ring
    expect(m.r16(0x3a)).toBe(0);
    receiving(m);
    m.wire.send(frameTo(MAC, 60));
    m.clock.runUntil(() => false, 1);
    m.w8(0x37, 0x10);
    expect(m.r16(0x3a)).toBe(0);
    expect(m.r16(0x38)).toBe(0xfff0);
  });
});

describe('RTL8139 model: transmit', () => {
  it('transmits from TSAD0 and sets OWN|TOK (TSD0 reads 0xA03C after 60 bytes) and ISR.TOK', () => {
    const m = machine();
    const frame = new Uint8Array(60).map((_, i) => i);
    m.vm.memory.write(0x10000, frame);
    m.w8(0x37, 0x0c);
    m.w16(0x3c, 0xffff);
    m.w32(0x20, 0x10000);
    m.w32(0x10, 60);
    expect(m.r32(0x10)).toBe(0xa03c);
    expect(m.r16(0x3e) & 0x04).toBe(0x04);
    m.w16(0x3e, 0x04);
    expect(m.r16(0x3e)).toBe(0);
    m.clock.runUntil(() => m.got.length === 1, 10);
    expect([...m.got[0]!]).toEqual([...frame]);
  });

  it('with TE off a descriptor does not complete; it goes out once TE is set', () => {
    const m = machine();
    m.vm.memory.write(0x10000, frameTo([0xff, 0xff, 0xff, 0xff, 0xff, 0xff], 60));
    m.w8(0x37, 0x08); // receiver only
    m.w16(0x3c, 0xffff);
    m.w32(0x20, 0x10000);
    m.w32(0x10, 60);
    m.clock.runUntil(() => false, 1);
    expect(m.r32(0x10)).toBe(60); // OWN clear, no TOK: still the chip's
    expect(m.r16(0x3e) & 0x0c).toBe(0);
    expect(m.got.length).toBe(0);
    m.w8(0x37, 0x0c);
    m.clock.runUntil(() => false, 1);
    expect(m.r32(0x10)).toBe(0xa03c);
    expect(m.got.length).toBe(1);
  });

  it('SIZE 0 or over 1792 never leaves (OWN|TUN, ISR.TER); over 1518 or under 60 completes but dies on the segment', () => {
    const m = machine();
    m.w8(0x37, 0x0c);
    m.w16(0x3c, 0xffff);
    for (let n = 0; n < 4; n++) m.w32(0x20 + 4 * n, 0x10000);
    m.w32(0x10, 0);
    expect(m.r32(0x10)).toBe(0x6000);
    m.w32(0x14, 1793);
    expect(m.r32(0x14)).toBe(0x6000 | 1793);
    expect(m.r16(0x3e) & 0x08).toBe(0x08);
    m.w32(0x18, 1792);
    m.w32(0x1c, 59);
    expect(m.r32(0x18)).toBe(0xa000 | 1792);
    expect(m.r32(0x1c)).toBe(0xa000 | 59);
    m.clock.runUntil(() => false, 1);
    expect(m.got.length).toBe(0);
    expect(m.counters()).toMatchObject({ txBadLength: 2, txDropGiant: 1, txDropRunt: 1, txFrames: 0 });
    expect(m.vm.failures.size).toBe(0);
  });

  it('with TCR.CRC set (the driver appends its own FCS) the last 4 bytes are the FCS, not frame', () => {
    const m = machine();
    m.w8(0x37, 0x0c);
    m.w32(0x40, 0x03010600);
    const f = frameTo([0xff, 0xff, 0xff, 0xff, 0xff, 0xff], 64);
    m.vm.memory.write(0x10000, f);
    m.w32(0x20, 0x10000);
    m.w32(0x10, 64);
    m.clock.runUntil(() => m.got.length === 1, 10);
    expect([...m.got[0]!]).toEqual([...f.subarray(0, 60)]);
  });

  it('loopback (TCR LBK = 11) hands the frame to its own receiver instead of the cable', () => {
    const m = machine();
    receiving(m);
    m.w32(0x40, 0x03060600);
    m.vm.memory.write(0x10000, frameTo(MAC, 60, 7));
    m.w32(0x20, 0x10000);
    m.w32(0x10, 60);
    m.clock.runUntil(() => false, 1);
    expect(m.got.length).toBe(0);
    expect(m.vm.memory.bytes[RX_RING + 4 + 14]).toBe(7);
    expect(m.counters().txLoopback).toBe(1);
  });
});

describe('RTL8139 model: register rules', () => {
  it('RCR and TCR reserved bits read back 0 (not sticky); TCR version bits stay; CLRABT reads 0', () => {
    const m = machine();
    m.w8(0x37, 0x0c);
    m.w32(0x44, 0xffffffff);
    expect(m.r32(0x44)).toBe(0x0f03ffbf);
    m.w32(0x40, 0xffffffff);
    expect(m.r32(0x40) >>> 0).toBe(0x430707f0);
    m.w32(0x40, 0x00000001); // 8139too's TxClearAbt after an aborted frame
    expect(m.r32(0x40) >>> 0).toBe(0x40000000);
    m.w16(0x5c, 0xffff);
    expect(m.r16(0x5c)).toBe(0x0fff);
    m.w16(0x3c, 0xffff);
    expect(m.r16(0x3c)).toBe(0xe07f);
  });

  it('config registers take writes only while 9346CR unlocks them', () => {
    const m = machine();
    const before = m.r8(0x52);
    m.w8(0x52, before & ~0x03); // 8139too's old-chip wakeup, written while locked: ignored
    m.w8(0x52, 0xf3);
    expect(m.r8(0x52)).toBe(before);
    m.w8(0x50, 0xc0);
    m.w8(0x52, 0x00);
    m.w8(0x50, 0x00);
    expect(m.r8(0x52)).toBe(0x0c); // IOMAP | MEMMAP are read-only
    expect(m.vm.failures.size).toBe(0);
  });

  it('a write to a register the model does not implement fail-stops the NIC, naming it; reads never do', () => {
    for (const [off, name] of [
      [0x74, 'CSCR'],
      [0x7c, 'TW_PARM'],
      [0xe0, 'C+'],
      [0x53, 'reserved register 0x53'],
    ] as const) {
      const m = machine();
      for (let o = 0; o < 256; o += 4) m.r32(o); // ethtool's register dump
      expect(m.vm.failures.size).toBe(0);
      m.w16(off, 1);
      expect(m.vm.failures.get('net0')).toContain(name);
      expect(m.vm.state).toBe('running');
    }
    const m = machine();
    m.w32(0x54, 0); // TimerInt 0: no timer interrupt, which is what the model gives
    expect(m.vm.failures.size).toBe(0);
    m.w32(0x54, 1000);
    expect(m.vm.failures.get('net0')).toMatch(/TimerInt/);
  });

  it("every register write of Linux 8139too (probe, open, set_rx_mode, rx_err, tx_timeout, get_stats, set_wol, close) is implemented", () => {
    const m = machine();
    // rtl8139_init_board
    m.w8(0x5b, 0x52); // HltClk 'R'
    const version = m.r32(0x40) & 0x7cc00000;
    expect(version).toBe(0x40000000); // chipset "RTL-8139" (< CH_8139B): the old-chip wakeup path
    m.w8(0x52, m.r8(0x52) & ~0x03); // Config1 without unlocking, as 8139too does for old chips
    m.w8(0x37, 0x10);
    for (let i = 1000; i > 0 && m.r8(0x37) & 0x10; i--);
    // rtl8139_init_one: the EEPROM, then 'H'
    const addrLen = linuxReadEeprom(m, 0, 8) === 0x8129 ? 8 : 6;
    const mac = [7, 8, 9].flatMap((w) => {
      const v = linuxReadEeprom(m, w, addrLen);
      return [v & 0xff, v >> 8];
    });
    expect(mac).toEqual(MAC);
    m.w8(0x5b, 0x48);
    // rtl8139_hw_start
    m.w8(0x5b, 0x52);
    m.w8(0x37, 0x10);
    for (let i = 1000; i > 0 && m.r8(0x37) & 0x10; i--);
    m.w8(0x50, 0xc0);
    m.r8(0x50);
    m.w32(0x00, 0x12005452);
    m.r32(0x00);
    m.w32(0x04, 0x5634);
    m.r32(0x04);
    m.w32(0x30, RX_RING);
    m.r32(0x30);
    m.w8(0x37, 0x0c);
    const rxConfig = 0x1000 | 0x80 | (7 << 13) | (7 << 8) | 0x08 | 0x02;
    m.w32(0x44, rxConfig);
    m.w32(0x40, (3 << 24) | (6 << 8) | (8 << 4));
    // rtl_check_media → mii_check_media: BMSR twice (mii_link_ok), ANAR, ANLPAR
    expect(m.r16(0x64) & 0x04).toBe(0x04);
    expect(m.r16(0x64) & 0x04).toBe(0x04);
    expect(m.r16(0x66) & m.r16(0x68) & 0x0100).toBe(0x0100); // 100 Mb/s full duplex
    m.w8(0x50, 0x00);
    for (let i = 0; i < 4; i++) {
      m.w32(0x20 + 4 * i, 0x30000 + 1536 * i);
      m.r32(0x20 + 4 * i);
    }
    m.w32(0x4c, 0);
    m.w32(0x44, rxConfig); // __set_rx_mode (unchanged config is still written after rx_err)
    m.w32(0x08, 0);
    m.w32(0x0c, 0);
    m.w16(0x5c, m.r16(0x5c) & 0xf000);
    m.w16(0x3c, 0xc07f);
    // rtl8139_start_xmit of a 60-byte frame and the interrupt that reaps it
    m.vm.memory.write(0x30000, frameTo([0xff, 0xff, 0xff, 0xff, 0xff, 0xff], 60));
    m.w32(0x10, (256 << 11) & 0x003f0000 | 60);
    m.r32(0x10);
    const isr = m.r16(0x3e);
    m.w16(0x3e, isr & ~(0x51 | 0x08));
    expect(m.r32(0x10) & 0x8000).toBe(0x8000);
    // rtl8139_rx_err
    const cr = m.r8(0x37);
    m.w8(0x37, cr & ~0x08);
    m.w8(0x37, cr);
    m.w32(0x44, rxConfig);
    // rtl8139_get_stats, set_wol(0) (ethtool -s eth0 wol d), a transmit error's TxClearAbt
    m.r32(0x4c);
    m.w32(0x4c, 0);
    m.w8(0x50, 0xc0);
    m.w8(0x59, m.r8(0x59) & ~0x30);
    m.w8(0x50, 0x00);
    m.w8(0xd8, m.r8(0xd8) & ~0x70);
    m.w32(0x40, 0x01);
    m.w16(0x3e, 0x08);
    // mii_nway_restart (mdio_write location 0 unlocks around BMCR)
    m.w8(0x50, 0xc0);
    m.w16(0x62, m.r16(0x62) | 0x0200);
    m.w8(0x50, 0x00);
    // rtl8139_tx_timeout_task: TE off, IMR 0, then hw_start again; rtl8139_close
    m.w8(0x37, 0x08);
    m.w16(0x3c, 0);
    m.w8(0x37, 0);
    m.w16(0x3c, 0);
    m.w32(0x4c, 0);
    m.w8(0x50, 0xc0);
    m.w8(0x5b, 0x48);
    m.clock.runUntil(() => false, 1);
    expect(m.vm.failures.size).toBe(0);
    expect(m.got.length).toBe(1);
  });
});

describe('RTL8139 model: hostile guests', () => {
  it('a DMA address outside guest memory fail-stops the NIC, not the VM', () => {
    const m = machine();
    m.w8(0x37, 0x0c);
    m.w32(0x20, 0x7fff0000);
    m.w32(0x10, 60);
    expect(m.vm.failures.get('net0')).toMatch(/DMA outside guest memory/);
    expect(m.vm.state).toBe('running');
    expect(isNic(m.vm.device('net0')!)).toBe(true);
  });

  it('a receive ring at the top of the address space (RBSTART 0xFFFFFFF0) fail-stops the NIC on the first frame, nothing throws', () => {
    for (const rcr of [0x8a, 0x0a]) {
      const m = machine();
      m.w32(0x30, 0xfffffff0);
      m.w8(0x37, 0x0c);
      m.w32(0x44, rcr);
      m.wire.send(frameTo(MAC, 60));
      expect(() => m.clock.runUntil(() => false, 1)).not.toThrow();
      expect(m.vm.failures.get('net0')).toMatch(/receive ring at 0xfffffff0: DMA outside guest memory/);
      // Stopped: later frames and register writes do nothing.
      m.wire.send(frameTo(MAC, 60));
      m.w8(0x37, 0x10);
      m.clock.runUntil(() => false, 1);
      expect(m.counters().rxFrames).toBe(0);
    }
  });

  it('a ring that ends just inside guest memory works until a WRAP-mode packet runs past it', () => {
    const m = machine();
    const top = 16 * 1024 * 1024;
    m.w32(0x30, top - 8192);
    m.w8(0x37, 0x0c);
    m.w32(0x44, 0x0a); // no WRAP: packets wrap to the ring's start, always inside
    for (let i = 0; i < 20; i++) {
      m.wire.send(frameTo(MAC, 1000, i));
      m.clock.runUntil(() => false, 1);
      m.w16(0x38, (m.r16(0x3a) - 16) & 0xffff); // consume everything
    }
    expect(m.vm.failures.size).toBe(0);
    expect(m.counters().rxFrames).toBe(20);
  });
});
