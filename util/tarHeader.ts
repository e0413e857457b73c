/** A tar member header as tar-stream decodes it (its published type leaves out the cases strata's readers handle). */
export interface TarHeader {
  name: string;
  type: string | null;
  mode: number;
  mtime?: Date;
  uid: number;
  gid: number;
  uname: string;
  gname: string;
  size: number;
  linkname: string | null;
  pax?: Record<string, string> | null;
}
