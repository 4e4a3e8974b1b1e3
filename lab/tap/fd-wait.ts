import koffi from 'koffi';

/**
 * poll(2) and eventfd(2) through libc (koffi), for the TAP reader thread: it sleeps in poll on the
 * TAP fd and an eventfd, and the lab wakes it through the eventfd to stop it. A thread blocked in
 * read(2) could not be woken that way: closing an fd does not end a read already sleeping on it.
 */
type PollSync = (fds: Buffer, n: number, timeoutMs: number) => number;
type EventFd = (initval: number, flags: number) => number;

let pollSync: PollSync | null = null;
let eventFdFn: EventFd | null = null;

function load(): void {
  if (pollSync && eventFdFn) return;
  const lib = koffi.load('libc.so.6');
  pollSync = lib.func('int poll(_Inout_ uint8_t *fds, unsigned long nfds, int timeout)') as PollSync;
  eventFdFn = lib.func('int eventfd(unsigned int initval, int flags)') as EventFd;
}

const EFD_CLOEXEC = 0o2000000;
const POLLIN = 0x0001;

/** A new eventfd (close-on-exec), or -1. */
export function eventFd(): number {
  load();
  return eventFdFn!(0, EFD_CLOEXEC);
}

/** Wait on this thread until one of `fds` is readable or `timeoutMs` passes (-1: no limit). */
export class PollSet {
  private readonly pfds: Buffer;

  constructor(private readonly fds: number[]) {
    load();
    this.pfds = Buffer.alloc(8 * fds.length);
    fds.forEach((fd, i) => {
      this.pfds.writeInt32LE(fd, 8 * i);
      this.pfds.writeInt16LE(POLLIN, 8 * i + 4);
    });
  }

  /** Which of the fds are readable (or in error, which a read then reports); empty on timeout. */
  wait(timeoutMs: number): boolean[] {
    for (let i = 0; i < this.fds.length; i++) this.pfds.writeInt16LE(0, 8 * i + 6);
    const n = pollSync!(this.pfds, this.fds.length, timeoutMs);
    return this.fds.map((_, i) => n > 0 && this.pfds.readInt16LE(8 * i + 6) !== 0);
  }
}
