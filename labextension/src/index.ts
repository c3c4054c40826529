/**
 * Loom in JupyterLab: the studio (dashboard, traces, topics, editor, builder, history) in a main-area tab, and the
 * project's live agents and topics in the left sidebar.
 *
 * The studio's server runs behind the Jupyter server (jupyter-server-proxy starts it
 * on first use, at `<base_url>/loom-studio/`): same origin, Jupyter's authentication.
 */
import {
  ILabShell,
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette, WidgetTracker } from '@jupyterlab/apputils';
import { ILauncher } from '@jupyterlab/launcher';

import { loomIcon } from './icon';
import { fetchLive, IStudioView } from './live';
import { LoomSidebar } from './sidebar';
import { StudioTab } from './studio';

const PLUGIN_ID = '@loom-studio/jupyterlab:plugin';

export namespace CommandIDs {
  export const open = 'loom:open-studio';
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'The Loom studio in a tab, the live agents and topics in the sidebar.',
  autoStart: true,
  requires: [ILabShell],
  optional: [ILauncher, ICommandPalette, ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    shell: ILabShell,
    launcher: ILauncher | null,
    palette: ICommandPalette | null,
    restorer: ILayoutRestorer | null
  ) => {
    const tracker = new WidgetTracker<StudioTab>({ namespace: 'loom-studio' });

    const openStudio = (view: IStudioView): StudioTab => {
      let tab = tracker.currentWidget;
      if (tab === null || tab.isDisposed) {
        tab = new StudioTab(view);
        void tracker.add(tab);
        shell.add(tab, 'main');
      } else {
        tab.setView(view);
      }
      shell.activateById(tab.id);
      return tab;
    };

    app.commands.addCommand(CommandIDs.open, {
      label: 'Loom Studio',
      caption: 'Open the Loom studio (dashboard, traces, topics, editor, builder, history) in a tab',
      icon: args => (args.isPalette ? undefined : loomIcon),
      execute: args =>
        openStudio({
          agent: typeof args.agent === 'string' ? args.agent : undefined,
          topic: typeof args.topic === 'string' ? args.topic : undefined
        })
    });
    launcher?.add({ command: CommandIDs.open, category: 'Loom', rank: 0 });
    palette?.addItem({ command: CommandIDs.open, category: 'Loom' });

    const sidebar = new LoomSidebar(fetchLive, view => {
      void app.commands.execute(CommandIDs.open, { ...view });
    });
    shell.add(sidebar, 'left', { rank: 800 });

    if (restorer) {
      restorer.add(sidebar, sidebar.id);
      void restorer.restore(tracker, {
        command: CommandIDs.open,
        args: tab => ({ ...tab.view }),
        name: () => 'loom-studio'
      });
    }
  }
};

export default plugin;
