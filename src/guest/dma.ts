/**
 * The kernel's physical memory allocator for DMA (dma_alloc_coherent's role): hands out naturally
 * aligned, zeroed, physically contiguous regions of guest memory, above the first megabyte (where a
 * PC's firmware and legacy areas live) and below the top of guest memory. A bump allocator with a
 * free list per size is enough: drivers allocate their rings once at probe time.
 */
export interface DmaRegion {
  /** Guest physical address (what the device is told). */
  phys: number;
  /** The kernel's view of the same bytes. */
  bytes: Uint8Array;
}

export class DmaAllocator {
  private next: number;
  private readonly freeLists = new Map<number, number[]>();

  constructor(
    private readonly physical: Uint8Array,
    base = 0x100000,
  ) {
    this.next = base;
  }

  /** Allocate `size` bytes aligned to `align` (a power of two, default 16); null when memory is exhausted. */
  alloc(size: number, align = 16): DmaRegion | null {
    const reuse = this.freeLists.get(size)?.find((p) => p % align === 0);
    if (reuse !== undefined) {
      const list = this.freeLists.get(size)!;
      list.splice(list.indexOf(reuse), 1);
      const bytes = this.physical.subarray(reuse, reuse + size);
      bytes.fill(0);
      return { phys: reuse, bytes };
    }
    const phys = Math.ceil(this.next / align) * align;
    if (phys + size > this.physical.length) return null;
    this.next = phys + size;
    const bytes = this.physical.subarray(phys, phys + size);
    bytes.fill(0);
    return { phys, bytes };
  }

  free(region: DmaRegion): void {
    const list = this.freeLists.get(region.bytes.length) ?? [];
    list.push(region.phys);
    this.freeLists.set(region.bytes.length, list);
  }

  get used(): number {
    return this.next;
  }
}
