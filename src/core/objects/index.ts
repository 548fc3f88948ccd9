export { checkKey, checkPrefix, isValidKey, MAX_KEY_LENGTH } from './checks.ts'
export { DirectoryObjectStore } from './directory.ts'
export { openObjectStore } from './open.ts'
export {
  formatS3Url,
  parseS3Url,
  type S3Location,
  S3ObjectStore,
  type S3StoreOptions,
} from './s3.ts'
export * from './types.ts'
