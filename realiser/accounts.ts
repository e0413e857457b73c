/**
 * The system accounts the maintainer scripts add, made without running them: `systemd-sysusers` over a package's
 * sysusers.d files, `adduser --system` / `addgroup --system`, and the passwd package's `shadowconfig on`. Each is
 * modelled on the tool's own rules (the ones that decide ids, the line formats, which files are written), so the
 * files come out as the tool writes them; the tests compare them with an apt-and-dpkg install
 * (tests/oracle-debian.test.ts).
 *
 * Ids depend on the order the scripts run in: that is the configure order of `configureOrder` (realiser/
 * firstConfigure.ts), a package after the packages it depends on. Dates (`lastchg` in /etc/shadow) are the day of
 * SOURCE_DATE_EPOCH, as the tools write them when it is set.
 */
import { withGiven } from '../util/given.ts';

/** One file of the account database: its lines split on `:`, and whether a tool rewrote it. */
interface AccountFile {
  rows: string[][];
  mode: number;
  gid: number;
  changed: boolean;
}

/** /etc/passwd, /etc/group and, once something makes them, /etc/shadow and /etc/gshadow. */
export class Accounts {
  readonly passwd: AccountFile;
  readonly group: AccountFile;
  shadow?: AccountFile;
  gshadow?: AccountFile;

  constructor(passwd: string, group: string) {
    this.passwd = { rows: rowsOf(passwd), mode: 0o644, gid: 0, changed: false };
    this.group = { rows: rowsOf(group), mode: 0o644, gid: 0, changed: false };
  }

  user(name: string): string[] | undefined {
    return this.passwd.rows.find((r) => r[0] === name);
  }
  groupRow(name: string): string[] | undefined {
    return this.group.rows.find((r) => r[0] === name);
  }
  uidOf(name: string): number | undefined {
    if (/^\d+$/.test(name)) return Number(name);
    const r = this.user(name);
    return r ? Number(r[2]) : undefined;
  }
  gidOf(name: string): number | undefined {
    if (/^\d+$/.test(name)) return Number(name);
    const r = this.groupRow(name);
    return r ? Number(r[2]) : undefined;
  }
  nameOfUid(uid: number): string | undefined {
    return this.passwd.rows.find((r) => Number(r[2]) === uid)?.[0];
  }
  nameOfGid(gid: number): string | undefined {
    return this.group.rows.find((r) => Number(r[2]) === gid)?.[0];
  }

  /** The files' texts, for those a tool made or changed (passwd and group always). */
  files(): { path: string; text: string; mode: number; gid: number }[] {
    const out = [
      { path: 'etc/passwd', f: this.passwd },
      { path: 'etc/group', f: this.group },
      { path: 'etc/shadow', f: this.shadow },
      { path: 'etc/gshadow', f: this.gshadow },
    ];
    return out.filter((x) => x.f !== undefined).map(({ path, f }) => ({ path, text: f!.rows.map((r) => `${r.join(':')}\n`).join(''), mode: f!.mode, gid: f!.gid }));
  }
}

const rowsOf = (text: string) => text.split('\n').filter((l) => l !== '').map((l) => l.split(':'));

/** The day number `lastchg` holds for a time in seconds. */
export const dayOf = (seconds: number) => Math.floor(seconds / 86400);

// ---------------------------------------------------------------------------------------------------------------
// systemd-sysusers

export interface SysusersItem {
  type: 'u' | 'g' | 'm' | 'r';
  /** `u!`: the account is locked (expiry 1 in /etc/shadow). */
  locked: boolean;
  name: string;
  id?: string;
  gecos?: string;
  home?: string;
  shell?: string;
}

/** Splits a sysusers.d line into its fields: whitespace-separated, double or single quotes grouping. */
function fields(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quote: string | null = null;
  let inWord = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (quote) {
      if (ch === quote) quote = null;
      else if (ch === '\\' && i + 1 < line.length) cur += line[++i];
      else cur += ch;
    } else if (ch === '"' || ch === "'") {
      quote = ch;
      inWord = true;
    } else if (/\s/.test(ch)) {
      if (inWord) out.push(cur);
      cur = '';
      inWord = false;
    } else {
      cur += ch;
      inWord = true;
    }
  }
  if (inWord) out.push(cur);
  return out;
}

/** The items of a sysusers.d file (sysusers.d(5)); lines with specifiers (`%`) are left out, as nothing here expands them. */
export function parseSysusers(text: string): SysusersItem[] {
  const out: SysusersItem[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.includes('%')) continue;
    const [type, name, id, gecos, home, shell] = fields(line);
    const t = type === 'u!' ? 'u' : type;
    if (t !== 'u' && t !== 'g' && t !== 'm' && t !== 'r') continue;
    if (!name) continue;
    out.push(withGiven<SysusersItem>({ type: t, locked: type === 'u!', name }, { id, gecos, home, shell }));
  }
  return out;
}

/** sysusers' system range (Debian's build: SYSTEM_ALLOC_UID_MIN 100, SYSTEM_UID_MAX 999), unless `r` lines give one. */
const SYSUSERS_RANGE: [number, number] = [100, 999];

interface Todo {
  item: SysusersItem;
  uid?: number;
  gid?: number;
  groupName?: string;
  strict?: boolean;
  todoGroup?: boolean;
}

/**
 * One `systemd-sysusers FILE...` run (systemd 257's rules): the `g` items are processed first, then the `u` items
 * (each with its group of the same name), ids allocated downwards from the top of the range, a number used as uid
 * and gid together where it is free for both; new entries are appended to /etc/passwd and /etc/group, and to
 * /etc/shadow and /etc/gshadow (made mode 0000 when absent) with the password `!*`.
 */
export function sysusers(db: Accounts, items: SysusersItem[], days: number): void {
  // The first line for a name wins (sysusers warns about and ignores later conflicting ones).
  const users = new Map<string, Todo>();
  const groups = new Map<string, Todo>();
  const members: [string, string][] = [];
  const ranges: [number, number][] = [];
  for (const item of items) {
    if (item.type === 'u' && !users.has(item.name)) {
      const t: Todo = { item };
      const id = item.id;
      if (id && /^\d+$/.test(id)) t.uid = Number(id);
      else if (id && /^\d+:\d+$/.test(id)) {
        t.uid = Number(id.split(':')[0]);
        t.gid = Number(id.split(':')[1]);
        t.strict = true;
      } else if (id && /^\d+:[^:]+$/.test(id)) {
        t.uid = Number(id.split(':')[0]);
        t.groupName = id.split(':')[1]!;
      }
      users.set(item.name, t);
    } else if (item.type === 'g' && !groups.has(item.name)) {
      const t: Todo = { item };
      if (item.id && /^\d+$/.test(item.id)) t.gid = Number(item.id);
      groups.set(item.name, t);
    } else if (item.type === 'm' && item.id) {
      members.push([item.name, item.id]);
    } else if (item.type === 'r' && /^\d+-\d+$/.test(item.name)) {
      const [a, b] = item.name.split('-').map(Number) as [number, number];
      ranges.push([a, b]);
    }
  }
  // `m USER GROUP` makes a group that does not exist yet (and a user, with defaults).
  for (const [u, g] of members) {
    if (!groups.has(g) && !db.groupRow(g) && !users.has(g)) groups.set(g, { item: { type: 'g', locked: false, name: g } });
    if (!users.has(u) && !db.user(u)) users.set(u, { item: { type: 'u', locked: false, name: u } });
  }
  const range = ranges.length > 0 ? ranges.sort((a, b) => a[0] - b[0]) : [SYSUSERS_RANGE];
  let search = 0xffffffff;
  const nextLower = (): number | undefined => {
    const candidate = search - 1;
    let closest: number | undefined;
    for (const [a, b] of range) {
      if (candidate >= a && candidate <= b) return (search = candidate);
      if (b < candidate) closest = b;
    }
    if (closest === undefined) return undefined;
    return (search = closest);
  };
  const todoUids = new Map<number, Todo>();
  const todoGids = new Map<number, Todo>();
  const dbUid = (uid: number) => db.nameOfUid(uid);
  const dbGid = (gid: number) => db.nameOfGid(gid);
  // sysusers' uid_is_ok and gid_is_ok, one rule seen from either side: the id is free in its own space (planned and
  // in the database), and, when the other space is to get the same id, free there too or held by the same name.
  type Space = { todo: Map<number, Todo>; db: (id: number) => string | undefined };
  const uids: Space = { todo: todoUids, db: dbUid };
  const gids: Space = { todo: todoGids, db: dbGid };
  const idOk = (id: number, name: string, both: boolean, own: Space, other: Space) => {
    if (own.todo.has(id)) return false;
    if (both) {
      const o = other.todo.get(id);
      if (o && o.item.name !== name) return false;
    }
    if (own.db(id) !== undefined) return false;
    if (both) {
      const n = other.db(id);
      if (n !== undefined && n !== name) return false;
    }
    return true;
  };
  const gidOk = (gid: number, name: string, withUid: boolean) => idOk(gid, name, withUid, gids, uids);
  const uidOk = (uid: number, name: string, withGid: boolean) => idOk(uid, name, withGid, uids, gids);
  const addGroup = (t: Todo) => {
    const existing = db.gidOf(t.item.name);
    if (existing !== undefined && !/^\d+$/.test(t.item.name)) {
      t.gid = existing;
      return;
    }
    if (t.gid !== undefined) {
      const free = gidOk(t.gid, t.item.name, false);
      // `uid:gid` names a group that must exist already: nothing to make (sysusers fails when it does not).
      if (t.strict) {
        if (free) throw new Error(`sysusers: ${t.item.name} names group id ${t.gid}, which does not exist`);
        return;
      }
      if (!free) t.gid = undefined;
    }
    if (t.gid === undefined && t.uid !== undefined && gidOk(t.uid, t.item.name, true)) t.gid = t.uid;
    if (t.gid === undefined) {
      for (;;) {
        const c = nextLower();
        if (c === undefined) throw new Error(`sysusers: no free group id for ${t.item.name}`);
        if (gidOk(c, t.item.name, true)) {
          t.gid = c;
          break;
        }
      }
    }
    todoGids.set(t.gid!, t);
    t.todoGroup = true;
  };
  const addUser = (t: Todo) => {
    const existing = db.user(t.item.name);
    if (existing) {
      t.uid = Number(existing[2]);
      return;
    }
    if (t.uid !== undefined && !uidOk(t.uid, t.item.name, !t.strict)) t.uid = undefined;
    if (t.uid === undefined && t.gid !== undefined && uidOk(t.gid, t.item.name, true)) t.uid = t.gid;
    if (t.uid === undefined) {
      for (;;) {
        const c = nextLower();
        if (c === undefined) throw new Error(`sysusers: no free user id for ${t.item.name}`);
        if (uidOk(c, t.item.name, true)) {
          t.uid = c;
          break;
        }
      }
    }
    todoUids.set(t.uid!, t);
  };
  for (const t of groups.values()) addGroup(t);
  for (const t of users.values()) {
    const j = t.gid === undefined ? (groups.get(t.groupName ?? t.item.name) ?? (t.groupName ? users.get(t.groupName) : undefined)) : undefined;
    if (j && j.todoGroup) {
      t.gid = j.gid;
      t.strict = true;
    } else if (t.groupName) {
      const gid = db.gidOf(t.groupName);
      if (gid === undefined) throw new Error(`sysusers: group ${t.groupName} not found`);
      t.gid = gid;
      t.strict = true;
    } else {
      addGroup(t);
    }
    addUser(t);
  }

  if (todoGids.size > 0 || members.length > 0) {
    for (const [gid, t] of todoGids) db.group.rows.push([t.item.name, 'x', String(gid), '']);
    for (const [u, g] of members) {
      const row = db.groupRow(g);
      if (!row) continue;
      const list = row[3] ? row[3].split(',') : [];
      if (!list.includes(u)) row[3] = [...list, u].join(',');
    }
    db.group.changed = true;
    db.gshadow ??= { rows: [], mode: 0o000, gid: 0, changed: true };
    for (const t of todoGids.values()) db.gshadow.rows.push([t.item.name, '!*', '', '']);
    for (const [u, g] of members) {
      const row = db.gshadow.rows.find((r) => r[0] === g);
      if (!row) continue;
      const list = row[3] ? row[3].split(',') : [];
      if (!list.includes(u)) row[3] = [...list, u].join(',');
    }
    db.gshadow.changed = true;
  }
  if (todoUids.size > 0) {
    for (const [uid, t] of todoUids) {
      const home = t.item.home ?? '/';
      const shell = t.item.shell ?? (uid === 0 ? '/bin/sh' : '/usr/sbin/nologin');
      db.passwd.rows.push([t.item.name, 'x', String(uid), String(t.gid), t.item.gecos ?? '', home, shell]);
    }
    db.passwd.changed = true;
    db.shadow ??= { rows: [], mode: 0o000, gid: 0, changed: true };
    for (const t of todoUids.values()) db.shadow.rows.push([t.item.name, '!*', String(days), '', '', '', '', t.item.locked ? '1' : '', '']);
    db.shadow.changed = true;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// shadowconfig on (passwd's postinst on a first install)

/**
 * `shadowconfig on` over base-passwd's files, as its DPKG_ROOT path writes them (which it says are bit for bit what
 * pwconv and grpconv give): `*` passwords become `x`, /etc/shadow gets `NAME:*:DAY:0:99999:7:::` per user and
 * /etc/gshadow `NAME:*::` per group, both 0640 root:shadow. Over files a tool already changed it is what pwconv and
 * grpconv do: the password moves to the shadow file, entries already there are kept.
 */
export function shadowconfigOn(db: Accounts, days: number): void {
  const shadowGid = db.gidOf('shadow') ?? 42;
  const shadow = db.shadow ?? { rows: [], mode: 0o640, gid: shadowGid, changed: true };
  const gshadow = db.gshadow ?? { rows: [], mode: 0o640, gid: shadowGid, changed: true };
  for (const r of db.passwd.rows) {
    const pw = r[1] === 'x' ? '*' : (r[1] ?? '*');
    if (!shadow.rows.some((s) => s[0] === r[0])) shadow.rows.push([r[0]!, pw, String(days), '0', '99999', '7', '', '', '']);
    r[1] = 'x';
  }
  for (const r of db.group.rows) {
    const pw = r[1] === 'x' ? '*' : (r[1] ?? '*');
    if (!gshadow.rows.some((s) => s[0] === r[0])) gshadow.rows.push([r[0]!, pw, '', r[3] ?? '']);
    r[1] = 'x';
  }
  shadow.mode = gshadow.mode = 0o640;
  shadow.gid = gshadow.gid = shadowGid;
  shadow.changed = gshadow.changed = db.passwd.changed = db.group.changed = true;
  db.shadow = shadow;
  db.gshadow = gshadow;
}
