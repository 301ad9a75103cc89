/**
 * The contracts between image sources (OCI layout, OCI/Docker archives, a
 * rootfs tar, a directory), the layer merge and the EROFS writer. Nothing is
 * ever extracted: a source yields entries whose data is read once, as a stream.
 */

export type EntryKind = 'file' | 'dir' | 'symlink' | 'hardlink' | 'char' | 'block' | 'fifo' | 'socket';

/** One tar (or directory) entry, normalised and validated. */
export interface LayerEntry {
  /**
   * Relative to the image root, components joined by '/', with no '.', '..' or
   * empty components and no leading or trailing '/'; '' is the root itself.
   * Whiteouts keep their name here (`a/.wh.b`, `a/.wh..wh..opq`): the merge applies them.
   */
  path: string;
  kind: EntryKind;
  /** Permission bits with setuid/setgid/sticky (& 0o7777). */
  mode: number;
  uid: number;
  gid: number;
  mtimeSec: number;
  mtimeNsec: number;
  /** Bytes of data (files only; 0 for everything else). */
  size: number;
  /** symlink: the target as stored; hardlink: the normalised path of the entry it links to. */
  linkTarget?: string;
  devMajor?: number;
  devMinor?: number;
  /** Extended attributes by full name ("security.capability", "user.x"), in the order given. */
  xattrs: [string, Buffer][];
}

/** An entry with its data, which must be consumed (or skipped) before the next entry arrives. */
export interface StreamedEntry {
  entry: LayerEntry;
  /** Data of a 'file' entry (exactly entry.size bytes); empty for the rest. */
  body: AsyncIterable<Buffer>;
  /** Discards the data without reading it into memory. */
  skip(): Promise<void>;
}

/** One layer of an image; open() may be called once. */
export interface LayerHandle {
  /** The digest the layer is verified against while it is read ("sha256:..."), if the source names one. */
  digest?: string;
  /** Opens the layer as a stream of entries; a digest mismatch or corrupt data rejects the iteration. */
  open(): AsyncIterable<StreamedEntry>;
}

/** The parts of an OCI image config that fill a container's process. */
export interface ImageConfig {
  entrypoint?: string[];
  cmd?: string[];
  env?: string[];
  workingDir?: string;
  user?: string;
}

export type SourceKind = 'oci-layout' | 'oci-archive' | 'docker-archive' | 'rootfs-tar' | 'directory';

/** An opened image source: what to build, and under which key it is cached. */
export interface ImageSource {
  kind: SourceKind;
  /** What the user named (a path, with :TAG when one was given). */
  location: string;
  /**
   * The cache key ("sha256:..."), when it is known before reading the layers
   * (layer digests, a directory's tree hash). A rootfs tar's key is the digest of
   * its bytes, known only once it has been read: `keyAfterRead` gives it then.
   */
  key?: string;
  keyAfterRead?(): string;
  /** Names the image carries (repo tags, ref names); may be empty. */
  names: string[];
  config: ImageConfig;
  /** Bottom layer first. */
  layers: LayerHandle[];
}
