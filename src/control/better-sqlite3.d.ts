/**
 * The part of better-sqlite3's API that the SQLite store uses. The package ships no types of its own and the
 * project takes no @types package, so this declares only what store-sqlite.ts and its tests call.
 */
declare module 'better-sqlite3' {
  namespace Database {
    interface Options {
      readonly readonly?: boolean;
      readonly fileMustExist?: boolean;
      /** Milliseconds to wait for a lock held by another connection. */
      readonly timeout?: number;
    }

    interface RunResult {
      readonly changes: number;
      readonly lastInsertRowid: number | bigint;
    }

    /** `Row` is what one result row is declared to look like; the caller vouches for it in the SQL. */
    interface Statement<Row = unknown> {
      run(...params: readonly unknown[]): RunResult;
      get(...params: readonly unknown[]): Row | undefined;
      all(...params: readonly unknown[]): Row[];
      iterate(...params: readonly unknown[]): IterableIterator<Row>;
      /** Returns the first column of each row instead of an object. */
      pluck<Column = unknown>(toggle?: boolean): Statement<Column>;
      /** Returns each row as an array of its columns (cheaper than an object per row). */
      raw<Columns extends readonly unknown[] = unknown[]>(toggle?: boolean): Statement<Columns>;
      readonly reader: boolean;
    }

    type TransactionFunction<F extends (...args: never[]) => unknown> = F & {
      readonly default: F;
      readonly deferred: F;
      readonly immediate: F;
      readonly exclusive: F;
    };

    interface PragmaOptions {
      readonly simple?: boolean;
    }

    interface BackupMetadata {
      readonly totalPages: number;
      readonly remainingPages: number;
    }
  }

  class Database {
    constructor(filename: string, options?: Database.Options);
    readonly name: string;
    readonly open: boolean;
    readonly inTransaction: boolean;
    prepare<Row = unknown>(sql: string): Database.Statement<Row>;
    exec(sql: string): this;
    pragma(source: string, options?: Database.PragmaOptions): unknown;
    transaction<F extends (...args: never[]) => unknown>(fn: F): Database.TransactionFunction<F>;
    /**
     * SQLite's online backup into the file `destination`, `progress()` pages per event-loop turn (100 when
     * it returns undefined).
     */
    backup(
      destination: string,
      options?: { readonly progress?: (p: Database.BackupMetadata) => number | undefined },
    ): Promise<Database.BackupMetadata>;
    close(): this;
  }

  export = Database;
}
