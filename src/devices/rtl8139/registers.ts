/**
 * RTL8139 register offsets and bits, named as in the datasheet (RTL8139(A/B/C) datasheets, the
 * "Register Descriptions" chapter) and ../../../../shared/FACTS.md.
 */
export const RTL_IDR = 0x00;
export const RTL_MAR = 0x08;
export const RTL_TSD0 = 0x10;
export const RTL_TSAD0 = 0x20;
export const RTL_RBSTART = 0x30;
/** Early receive byte count (16 bits) and status (8 bits): read-only. */
export const RTL_ERBCR = 0x34;
export const RTL_ERSR = 0x36;
export const RTL_CR = 0x37;
export const RTL_CAPR = 0x38;
export const RTL_CBR = 0x3a;
export const RTL_IMR = 0x3c;
export const RTL_ISR = 0x3e;
export const RTL_TCR = 0x40;
export const RTL_RCR = 0x44;
export const RTL_TCTR = 0x48;
export const RTL_MPC = 0x4c;
export const RTL_9346CR = 0x50;
export const RTL_CONFIG0 = 0x51;
export const RTL_CONFIG1 = 0x52;
export const RTL_TIMERINT = 0x54;
export const RTL_MSR = 0x58;
export const RTL_CONFIG3 = 0x59;
export const RTL_CONFIG4 = 0x5a;
export const RTL_HLTCLK = 0x5b;
export const RTL_MULINT = 0x5c;
export const RTL_TSAD = 0x60;
export const RTL_BMCR = 0x62;
export const RTL_BMSR = 0x64;
export const RTL_ANAR = 0x66;
export const RTL_ANLPAR = 0x68;
export const RTL_ANER = 0x6a;
export const RTL_CONFIG5 = 0xd8;

export const CR_RST = 0x10;
export const CR_RE = 0x08;
export const CR_TE = 0x04;
export const CR_BUFE = 0x01;

export const ISR_ROK = 0x01;
export const ISR_RER = 0x02;
export const ISR_TOK = 0x04;
export const ISR_TER = 0x08;
export const ISR_RXOVW = 0x10;
export const ISR_PUN = 0x20;
export const ISR_FOVW = 0x40;
export const ISR_TIMEOUT = 0x4000;
export const ISR_SERR = 0x8000;
/** Bits 12:7 of ISR/IMR are reserved. */
export const IMR_MASK = 0xe07f;

export const TSD_SIZE = 0x1fff;
export const TSD_OWN = 0x2000;
export const TSD_TUN = 0x4000;
export const TSD_TOK = 0x8000;
/** Early TX threshold, bits 21:16: the one field besides SIZE and OWN the driver writes. */
export const TSD_ERTXTH = 0x003f0000;

export const RCR_AAP = 0x01;
export const RCR_APM = 0x02;
export const RCR_AM = 0x04;
export const RCR_AB = 0x08;
export const RCR_AR = 0x10;
export const RCR_AER = 0x20;
export const RCR_WRAP = 0x80;
/**
 * Writable RCR bits: AAP..AER (5:0), WRAP (7), MXDMA (10:8), RBLEN (12:11), RXFTH (15:13), RER8 (16),
 * MulERINT (17), ERTH (27:24). Bit 6 (9356SEL: which EEPROM is fitted, 0 = 93C46) and the reserved
 * bits 23:18 and 31:28 read 0 whatever is written.
 */
export const RCR_WRITABLE = 0x0f03ffbf;

/** TCR: CLRABT (bit 0) is a command and reads 0. */
export const TCR_CLRABT = 0x01;
/** TCR loopback (bits 18:17 = 11: the transmitter's frames come back to the receiver). */
export const TCR_LBK = 0x00060000;
/** TCR bit 16: 1 = the chip does not append a CRC; the driver supplied it. */
export const TCR_CRC = 0x00010000;
/** Writable TCR bits: TXRR (7:4), MXDMA (10:8), CRC (16), LBK (18:17), IFG (25:24). */
export const TCR_WRITABLE = 0x030707f0;
/**
 * The hardware version bits (30:26 and 23:22) of the original RTL8139: the entry Linux's 8139too
 * names "RTL-8139" (HasHltClk, no link-change thread, no twister tuning), never a C+ part.
 */
export const TCR_HWVER_RTL8139 = 0x40000000;

/** 9346CR: operating mode (EEM, bits 7:6) and the EEPROM pins. */
export const CR9346_EEM_MASK = 0xc0;
export const CR9346_EEM_NORMAL = 0x00;
export const CR9346_EEM_AUTOLOAD = 0x40;
export const CR9346_EEM_PROGRAM = 0x80;
export const CR9346_EEM_CONFIG = 0xc0;
export const CR9346_EECS = 0x08;
export const CR9346_EESK = 0x04;
export const CR9346_EEDI = 0x02;
export const CR9346_EEDO = 0x01;

/** HLTCLK: the ASCII letters the datasheet asks for. */
export const HLTCLK_RUN = 0x52; // 'R'
export const HLTCLK_HALT = 0x48; // 'H'

/** MSR bits (FACTS.md): SPEED_10 set = 10 Mb/s, LINKB set = link down. */
export const MSR_TXFCE = 0x80;
export const MSR_RXFCE = 0x40;
export const MSR_SPEED_10 = 0x08;
export const MSR_LINKB = 0x04;

/** Receive-header status bits (FACTS.md; Linux's RxStatusOK … RxMulticast). */
export const RX_STATUS_ROK = 0x0001;
export const RX_STATUS_FAE = 0x0002;
export const RX_STATUS_CRC = 0x0004;
export const RX_STATUS_LONG = 0x0008;
export const RX_STATUS_RUNT = 0x0010;
export const RX_STATUS_ISE = 0x0020;
export const RX_STATUS_BAR = 0x2000;
export const RX_STATUS_PAM = 0x4000;
export const RX_STATUS_MAR = 0x8000;

export function rxRingSize(rcr: number): number {
  return 8192 << ((rcr >>> 11) & 3);
}
