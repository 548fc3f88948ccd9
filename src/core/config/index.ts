export {
  ConfigError,
  type ConfigOf,
  type Loaded,
  type LoadOptions,
  loadConfig,
  type Sections,
  type Source,
} from './load.ts'
export { parse } from './parsers.ts'
export {
  defineSettings,
  type ResolvedSoFar,
  type Setting,
  type SettingsSpec,
  SettingValueError,
  type Values,
} from './setting.ts'
